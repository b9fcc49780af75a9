// Package problem writes RFC 9457 problem details, the body of every 4xx and
// 5xx answer of the API.
package problem

import (
	"encoding/json"
	"net/http"

	"github.com/event-aggregator/event-aggregator/pkg/event"
)

// Details is an application/problem+json body.
type Details struct {
	Type   string             `json:"type"`
	Title  string             `json:"title"`
	Status int                `json:"status"`
	Detail string             `json:"detail,omitempty"`
	Errors []event.FieldError `json:"errors,omitempty"`
}

// Write answers with status and a problem body.
func Write(w http.ResponseWriter, status int, detail string, errs []event.FieldError) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Details{
		Type:   "about:blank",
		Title:  http.StatusText(status),
		Status: status,
		Detail: detail,
		Errors: errs,
	})
}
