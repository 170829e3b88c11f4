package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// render turns a decoded value into the text the test compares: numerics as decimals, dates as
// YYYY-MM-DD, UUIDs in their usual form, JSON as JSON text.
func render(v any) string {
	switch x := v.(type) {
	case pgtype.Numeric:
		f, err := x.Float64Value()
		if err != nil {
			return err.Error()
		}
		return fmt.Sprint(f.Float64)
	case time.Time:
		return x.Format("2006-01-02")
	case [16]byte:
		return fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16])
	case map[string]any, []any:
		b, _ := json.Marshal(x)
		return string(b)
	case string:
		return x
	default:
		return fmt.Sprint(x)
	}
}
