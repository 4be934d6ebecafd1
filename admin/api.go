package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxBody bounds a JSON request body; the largest is explain's, with the
// cookies and headers of the request it describes.
const maxBody = 64 << 10

// bearerRealm is sent in WWW-Authenticate (RFC 6750 section 3).
const bearerRealm = `Bearer realm="tlsedge admin"`

// disabledMsg answers a change when no token is configured.
const disabledMsg = "the state-changing admin API is disabled: start tlsedge with --admin-token-file FILE"

type errorBody struct {
	Error string `json:"error"`
}

// guard admits a state-changing request: same-site (or no browser at all),
// with the right token. A refused request reaches nothing of the Source.
func (h *handler) guard(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A token is required anyway, but a browser that holds no token
		// must not be able to even probe the API from another site.
		if err := h.crossSite.Check(r); err != nil {
			h.refuse(w, r, http.StatusForbidden, "cross-site request refused")
			return
		}
		if h.cfg.Token == "" {
			h.refuse(w, r, http.StatusForbidden, disabledMsg)
			return
		}
		token, ok := bearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", bearerRealm)
			h.refuse(w, r, http.StatusUnauthorized, "missing bearer token")
			return
		}
		// Comparing digests keeps the comparison constant-time in the
		// token's length too.
		sum := sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(sum[:], h.tokenSum[:]) != 1 {
			w.Header().Set("WWW-Authenticate", bearerRealm+`, error="invalid_token"`)
			h.refuse(w, r, http.StatusUnauthorized, "invalid bearer token")
			return
		}
		next(w, r)
	})
}

func (h *handler) refuse(w http.ResponseWriter, r *http.Request, code int, msg string) {
	h.cfg.log("admin: request refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "status", code, "reason", msg)
	writeError(w, code, msg)
}

// bearerToken returns the token of an `Authorization: Bearer` header. The
// scheme is case-insensitive (RFC 9110 section 11.1).
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// healthz is for the layer in front: 200 "ok", or 503 and why.
func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	ok, reason := h.src.Health()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = io.WriteString(w, reason+"\n") // the status is the answer
}

func (h *handler) getState(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.src.State())
}

func (h *handler) reload(w http.ResponseWriter, r *http.Request) {
	if err := h.src.Reload(r.Context()); err != nil {
		h.cfg.log("admin: reload failed", "remote", r.RemoteAddr, "error", err)
		writeError(w, statusOf(err, http.StatusConflict),
			"reload failed, the running configuration stays: "+err.Error())
		return
	}
	hash := h.src.State().ConfigHash
	h.cfg.log("admin: reloaded", "remote", r.RemoteAddr, "config_hash", hash)
	writeJSON(w, http.StatusOK, struct {
		Reloaded   bool   `json:"reloaded"`
		ConfigHash string `json:"config_hash"`
	}{true, hash})
}

// maxPlanBody bounds the configuration POST /api/plan compares.
const maxPlanBody = 1 << 20

// plan answers what a reload would change. It changes nothing, but it
// makes the server read the files a configuration names, so it is
// guarded like a reload.
func (h *handler) plan(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPlanBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the configuration is larger than %d bytes", maxPlanBody))
		return
	}
	p, err := h.src.Plan(r.Context(), body)
	if err != nil {
		writeError(w, statusOf(err, http.StatusInternalServerError), "a reload would be refused: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// explain says what the running instance would do with a request. It
// reads only the running configuration, so it needs no token.
func (h *handler) explain(w http.ResponseWriter, r *http.Request) {
	if err := h.crossSite.Check(r); err != nil {
		writeError(w, http.StatusForbidden, "cross-site request refused")
		return
	}
	var q ExplainRequest
	if !decode(w, r, &q) {
		return
	}
	lines, err := h.src.Explain(r.Context(), q)
	if err != nil {
		writeError(w, statusOf(err, http.StatusInternalServerError), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Lines []string `json:"lines"`
	}{lines})
}

func (h *handler) setState(w http.ResponseWriter, r *http.Request) {
	var req struct {
		State *string `json:"state"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.State == nil {
		writeError(w, http.StatusBadRequest, `body must be {"state": "ready" | "drain" | "maint"}`)
		return
	}
	switch *req.State {
	case StateReady, StateDrain, StateMaint:
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("state must be ready, drain or maint, not %q", *req.State))
		return
	}
	app, id, ok := h.lookup(w, r)
	if !ok {
		return
	}
	if err := h.src.SetBackendState(app, id, *req.State); err != nil {
		writeError(w, statusOf(err, http.StatusInternalServerError), err.Error())
		return
	}
	h.cfg.log("admin: backend state set", "app", app, "backend", id, "state", *req.State, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, struct {
		App     string `json:"app"`
		Backend string `json:"backend"`
		State   string `json:"state"`
	}{app, id, *req.State})
}

func (h *handler) setWeight(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Weight *int `json:"weight"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.Weight == nil {
		writeError(w, http.StatusBadRequest, `body must be {"weight": N}`)
		return
	}
	if *req.Weight < 1 || *req.Weight > MaxWeight {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("weight must be 1..%d, not %d (to take a backend out, set its state to drain or maint)", MaxWeight, *req.Weight))
		return
	}
	app, id, ok := h.lookup(w, r)
	if !ok {
		return
	}
	if err := h.src.SetWeight(app, id, *req.Weight); err != nil {
		writeError(w, statusOf(err, http.StatusInternalServerError), err.Error())
		return
	}
	h.cfg.log("admin: backend weight set", "app", app, "backend", id, "weight", *req.Weight, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, struct {
		App     string `json:"app"`
		Backend string `json:"backend"`
		Weight  int    `json:"weight"`
	}{app, id, *req.Weight})
}

// lookup resolves the {app} and {backend} of the path against the current
// state. {backend} is a backend ID or, failing that, its address; the Source
// is always called with the ID. Unknown names are answered with 404 here, so
// the Source sees only names it has just reported (a reload in between is its
// own ErrNotFound).
func (h *handler) lookup(w http.ResponseWriter, r *http.Request) (app, id string, ok bool) {
	app, name := r.PathValue("app"), r.PathValue("backend")
	st := h.src.State()
	for i := range st.Apps {
		a := &st.Apps[i]
		if a.Name != app {
			continue
		}
		for _, b := range a.Backends {
			if b.ID == name {
				return app, b.ID, true
			}
		}
		for _, b := range a.Backends {
			if b.Addr == name {
				return app, b.ID, true
			}
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("app %q has no backend %q", app, name))
		return "", "", false
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("unknown app %q", app))
	return "", "", false
}

// decode reads one JSON object into v and answers 400 if that fails.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(new(json.RawMessage)) != io.EOF {
		err = errors.New("trailing data after the JSON object")
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad request body: "+err.Error())
		return false
	}
	return true
}

// statusOf maps a Source error to an HTTP status; see ErrNotFound.
func statusOf(err error, fallback int) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	}
	return fallback
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) // the status line is out; a failed write has no one to tell
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{msg})
}

// jsonErrorWriter turns the plain-text 404 and 405 of the ServeMux into the
// JSON errors the rest of the API answers with. The mux's headers (Allow)
// stay.
type jsonErrorWriter struct {
	http.ResponseWriter
	replaced bool
}

func (w *jsonErrorWriter) WriteHeader(code int) {
	if code < 400 || w.replaced {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.replaced = true
	msg := "no such API endpoint"
	if allow := w.Header().Get("Allow"); allow != "" {
		msg = "method not allowed; allowed: " + allow
	}
	w.Header().Del("Content-Length")
	writeError(w.ResponseWriter, code, msg)
}

func (w *jsonErrorWriter) Write(p []byte) (int, error) {
	if w.replaced {
		return len(p), nil // the mux's text body, already replaced
	}
	return w.ResponseWriter.Write(p)
}

func (w *jsonErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
