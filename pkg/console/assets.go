package console

import (
	"encoding/json"
	"net/http"
)

// The page allows nothing but its own files and requests to its own origin:
// every value from the server is written as text, and a stray injection
// could run no inline script anyway.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Page serves GET /, the console.
func (c *Console) Page(w http.ResponseWriter, r *http.Request) {
	c.serve(w, r, "assets/index.html", "text/html; charset=utf-8")
}

// Script serves GET /console/app.js.
func (c *Console) Script(w http.ResponseWriter, r *http.Request) {
	c.serve(w, r, "assets/app.js", "text/javascript; charset=utf-8")
}

// Style serves GET /console/app.css.
func (c *Console) Style(w http.ResponseWriter, r *http.Request) {
	c.serve(w, r, "assets/app.css", "text/css; charset=utf-8")
}

func (c *Console) serve(w http.ResponseWriter, r *http.Request, name, ctype string) {
	b, err := assets.ReadFile(name)
	if err != nil { // embedded at build time: cannot happen
		c.o.Log.ErrorContext(r.Context(), "console asset missing", "name", name, "err", err)
		http.Error(w, "console asset missing", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	// The assets change with the binary only; a restart with a new version
	// must not keep an old script in the browser.
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n'))
}
