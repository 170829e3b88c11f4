// fixed-rate: HTTP latency at a fixed request rate, measured with fortio (the load generator
// Istio publishes its data-plane latency with) as a library: this tree's bench reads one JSON
// line instead of fortio's report. Open loop at -qps over -c connections for -t; the latency
// histogram has 10 µs buckets (fortio's default is 1 ms, too coarse for sub-millisecond
// percentiles).
//
//	fixed-rate -url http://127.0.0.1:8080/customers -qps 1000 -c 16 -t 10s [-H 'name: value'] [-payload-size 1024]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"fortio.org/fortio/fhttp"
	"fortio.org/fortio/periodic"
	"fortio.org/log"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

type result struct {
	Requests  int64   `json:"requests"`
	ActualQPS float64 `json:"actualQps"`
	Errors    int64   `json:"errors"`
	P50us     float64 `json:"p50us"`
	P90us     float64 `json:"p90us"`
	P99us     float64 `json:"p99us"`
	P999us    float64 `json:"p999us"`
	MaxUs     float64 `json:"maxUs"`
}

func main() {
	url := flag.String("url", "", "target URL")
	qps := flag.Float64("qps", 1000, "requests per second, held whatever the answers take")
	conns := flag.Int("c", 16, "connections")
	dur := flag.Duration("t", 10*time.Second, "duration")
	payload := flag.Int("payload-size", 0, "POST a body of this many bytes (0: GET)")
	var hs headers
	flag.Var(&hs, "H", "extra request header 'name: value' (repeatable)")
	flag.Parse()
	if *url == "" {
		fmt.Fprintln(os.Stderr, "fixed-rate: -url is required (see -h)")
		os.Exit(2)
	}
	log.SetOutput(io.Discard)
	log.SetLogLevelQuiet(log.Error)
	o := fhttp.HTTPRunnerOptions{}
	o.RunnerOptions = periodic.RunnerOptions{
		QPS: *qps, NumThreads: *conns, Duration: *dur,
		Percentiles: []float64{50, 90, 99, 99.9}, Resolution: 0.00001, Out: io.Discard,
	}
	o.Init(*url)
	for _, h := range hs {
		if err := o.AddAndValidateExtraHeader(h); err != nil {
			fmt.Fprintf(os.Stderr, "fixed-rate: header %q: %v\n", h, err)
			os.Exit(2)
		}
	}
	if *payload > 0 {
		o.Payload = []byte(strings.Repeat("x", *payload))
	}
	res, err := fhttp.RunHTTPTest(&o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fixed-rate: %v\n", err)
		os.Exit(1)
	}
	h := res.DurationHistogram
	r := result{Requests: h.Count, ActualQPS: res.ActualQPS, MaxUs: h.Max * 1e6}
	for code, n := range res.RetCodes {
		if code != 200 {
			r.Errors += n
		}
	}
	for _, p := range h.Percentiles {
		switch p.Percentile {
		case 50:
			r.P50us = p.Value * 1e6
		case 90:
			r.P90us = p.Value * 1e6
		case 99:
			r.P99us = p.Value * 1e6
		case 99.9:
			r.P999us = p.Value * 1e6
		}
	}
	_ = json.NewEncoder(os.Stdout).Encode(r)
}
