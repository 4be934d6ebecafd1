package filter

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestMethods(t *testing.T) {
	reached := 0
	h := Methods(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++ }), nil)
	for method, want := range map[string]int{"GET": 200, "POST": 200, "OPTIONS": 200, "TRACE": 405, "CONNECT": 405, "PROPFIND": 405} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, "/", nil))
		if w.Code != want {
			t.Errorf("%s: %d, want %d", method, w.Code, want)
		}
		if want == 405 && w.Header().Get("Allow") != "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS" {
			t.Errorf("%s: Allow %q", method, w.Header().Get("Allow"))
		}
	}
	if reached != 3 {
		t.Errorf("%d requests reached the app, want 3", reached)
	}
	h = Methods(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), []string{"get", "PROPFIND"})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("PROPFIND", "/", nil))
	if w.Code != 200 {
		t.Errorf("a configured method refused: %d", w.Code)
	}
}
