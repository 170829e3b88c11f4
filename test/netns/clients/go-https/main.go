// An agent's Go program with net/http's defaults: http.DefaultClient (HTTPS_PROXY honoured, the
// system trust store from SSL_CERT_FILE). Prints one JSON line: {"status":..,"body":..} or
// {"error":..}. With -roots FILE it trusts only the CAs in FILE, as a client that pins its roots.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"strings"
)

func main() {
	method := flag.String("method", "GET", "request method")
	body := flag.String("body", "", "request body")
	roots := flag.String("roots", "", "trust only the CAs in this PEM file")
	var headers multi
	flag.Var(&headers, "H", "request header (repeatable)")
	flag.Parse()
	out := json.NewEncoder(os.Stdout)

	client := http.DefaultClient
	if *roots != "" {
		pem, err := os.ReadFile(*roots)
		if err != nil {
			_ = out.Encode(map[string]string{"error": err.Error()})
			os.Exit(1)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		transport := http.DefaultTransport.(*http.Transport).Clone()
		transport.TLSClientConfig = &tls.Config{RootCAs: pool}
		client = &http.Client{Transport: transport}
	}
	req, err := http.NewRequest(*method, flag.Arg(0), strings.NewReader(*body))
	if err != nil {
		_ = out.Encode(map[string]string{"error": err.Error()})
		os.Exit(1)
	}
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	res, err := client.Do(req)
	if err != nil {
		_ = out.Encode(map[string]string{"error": err.Error()})
		return
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	_ = out.Encode(map[string]any{"status": res.StatusCode, "contentType": res.Header.Get("content-type"), "body": string(data)})
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }
