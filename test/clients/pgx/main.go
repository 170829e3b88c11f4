// The driver workload (test/clients/driver-workload.ts) for pgx v5, built by .ci/run into
// ~/.cache/airlock. usage: pgx-workload HOST PORT; prints one JSON report on stdout.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

const rowSQL = "SELECT id, name, email, note, amount, signup, ref, doc, tags FROM customers WHERE id = "

type row struct {
	ID     string   `json:"id"`
	Name   string   `json:"name"`
	Email  string   `json:"email"`
	Note   string   `json:"note"`
	Amount string   `json:"amount"`
	Signup string   `json:"signup"`
	Ref    string   `json:"ref"`
	Doc    string   `json:"doc"`
	Tags   []string `json:"tags"`
}

type drvErr struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func errOf(err error) *drvErr {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return &drvErr{Code: pe.Code, Message: pe.Message}
	}
	return &drvErr{Code: "", Message: err.Error()}
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// readRow scans the customer row; values are rendered as strings the way the test expects.
func readRow(ctx context.Context, q querier, sql string, args ...any) (*row, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		if rows.Err() != nil {
			return nil, rows.Err()
		}
		return nil, fmt.Errorf("no row")
	}
	vals, err := rows.Values()
	if err != nil {
		return nil, err
	}
	r := &row{}
	r.ID = fmt.Sprint(vals[0])
	r.Name = fmt.Sprint(vals[1])
	r.Email = fmt.Sprint(vals[2])
	r.Note = fmt.Sprint(vals[3])
	r.Amount = render(vals[4])
	r.Signup = render(vals[5])
	r.Ref = render(vals[6])
	r.Doc = render(vals[7])
	if arr, ok := vals[8].([]any); ok {
		for _, v := range arr {
			r.Tags = append(r.Tags, fmt.Sprint(v))
		}
	}
	rows.Close()
	return r, rows.Err()
}

func must[T any](v T, err error) T {
	if err != nil {
		fail(err)
	}
	return v
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func count(ctx context.Context, c *pgx.Conn) int {
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n); err != nil {
		fail(err)
	}
	return n
}

func main() {
	ctx := context.Background()
	dsn := fmt.Sprintf("postgres://agent@%s:%s/airlock?sslmode=disable", os.Args[1], os.Args[2])
	cfg := must(pgx.ParseConfig(dsn))
	var mu sync.Mutex
	notices := []string{}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		notices = append(notices, n.Message)
		mu.Unlock()
	}
	c := must(pgx.ConnectConfig(ctx, cfg))
	defer c.Close(ctx)
	report := map[string]any{}
	extras := map[string]any{}
	report["extras"] = extras

	// Default mode (QueryExecModeCacheStatement): prepared and described, binary where pgx knows the type.
	report["select"] = must(readRow(ctx, c, rowSQL+"1"))
	prepared := []*row{}
	for i := 0; i < 8; i++ {
		prepared = append(prepared, must(readRow(ctx, c, rowSQL+"$1", 1)))
	}
	report["prepared"] = prepared
	_, err := c.Exec(ctx, "DELETE FROM customers")
	report["denied"] = errOf(err)
	report["after"] = count(ctx, c)

	tx := map[string]any{}
	t := must(c.Begin(ctx))
	must(t.Exec(ctx, "SELECT 1"))
	_, err = t.Exec(ctx, "DELETE FROM customers WHERE id = $1", 1)
	tx["denied"] = errOf(err)
	_ = t.Rollback(ctx)
	tx["after"] = count(ctx, c)
	report["tx"] = tx

	tag := must(c.Exec(ctx, "INSERT INTO events (what) VALUES ($1)", "pgx"))
	report["inserted"] = tag.RowsAffected()
	tag = must(c.Exec(ctx, "UPDATE customers SET name = name WHERE id = $1", 1))
	mu.Lock()
	report["approval"] = map[string]any{"rows": tag.RowsAffected(), "notices": append([]string{}, notices...)}
	mu.Unlock()

	// Every other exec mode.
	modes := map[string]pgx.QueryExecMode{
		"cacheDescribe":  pgx.QueryExecModeCacheDescribe,
		"describeExec":   pgx.QueryExecModeDescribeExec,
		"exec":           pgx.QueryExecModeExec,
		"simpleProtocol": pgx.QueryExecModeSimpleProtocol,
	}
	byMode := map[string]any{}
	for name, mode := range modes {
		r, err := readRow(ctx, c, rowSQL+"$1", mode, 1)
		if err != nil {
			byMode[name] = errOf(err)
		} else {
			byMode[name] = r
		}
	}
	extras["modes"] = byMode
	// A value derived from the covered column, in binary int4: refused, and the session goes on.
	var n int
	extras["derivedInt"] = errOf(c.QueryRow(ctx, "SELECT length(email) AS n FROM customers").Scan(&n))
	var s string
	must(0, c.QueryRow(ctx, "SELECT length(email)::text AS n FROM customers").Scan(&s))
	extras["derivedText"] = s
	// An enum and citext (types defined in the database); pgx asks for unknown types as text.
	var tierName, handle string
	var handles []string
	must(0, c.QueryRow(ctx, "SELECT tier, handle, handles::text[] FROM accounts").Scan(&tierName, &handle, &handles))
	extras["typed"] = []any{tierName, handle, handles}
	// A batch: several queries in one round trip, each masked.
	b := &pgx.Batch{}
	b.Queue(rowSQL+"$1", 1)
	b.Queue(rowSQL + "1")
	br := c.SendBatch(ctx, b)
	batch := []any{}
	for i := 0; i < 2; i++ {
		if r, err := readRow(ctx, batchQuerier{br}, ""); err != nil {
			batch = append(batch, errOf(err))
		} else {
			batch = append(batch, r)
		}
	}
	must(0, br.Close())
	extras["batch"] = batch
	// A batch with a denied statement fails as one with a server error would; the session goes on.
	b = &pgx.Batch{}
	b.Queue("SELECT 1")
	b.Queue("DELETE FROM customers")
	br = c.SendBatch(ctx, b)
	_, _ = br.Exec()
	_, err = br.Exec()
	extras["batchDenied"] = errOf(err)
	_ = br.Close()
	extras["batchAfter"] = count(ctx, c)

	// pgxpool: acquire, query, release, several times over two connections.
	pool := must(pgxpool.New(ctx, dsn+"&pool_max_conns=2"))
	pooled := []*row{}
	for i := 0; i < 4; i++ {
		pooled = append(pooled, must(readRow(ctx, pool, rowSQL+"$1", 1)))
	}
	pool.Close()
	extras["pool"] = pooled

	out := must(json.Marshal(report))
	fmt.Println(string(out))
}

// batchQuerier reads the next batch result as if it were a Query.
type batchQuerier struct{ br pgx.BatchResults }

func (b batchQuerier) Query(context.Context, string, ...any) (pgx.Rows, error) {
	return b.br.Query()
}
