package filter

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestMaxBody(t *testing.T) {
	var got []byte
	var readErr error
	h := MaxBody(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, readErr = io.ReadAll(r.Body)
	}), 1000)

	// Declared too large: 413, the app never runs.
	got, readErr = nil, nil
	w := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "/", bytes.NewReader(make([]byte, 1001)))
	h.ServeHTTP(w, r)
	if w.Code != http.StatusRequestEntityTooLarge || got != nil {
		t.Errorf("declared 1001 bytes: %d, app read %d", w.Code, len(got))
	}
	// Within the limit: passes whole.
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/", bytes.NewReader(make([]byte, 1000))))
	if w.Code != 200 || len(got) != 1000 || readErr != nil {
		t.Errorf("1000 bytes: %d, read %d, %v", w.Code, len(got), readErr)
	}
	// Chunked (unknown length) over the limit: the read fails, never a
	// clean EOF at the cut.
	r = httptest.NewRequest("POST", "/", io.NopCloser(strings.NewReader(strings.Repeat("x", 5000))))
	r.ContentLength = -1
	h.ServeHTTP(httptest.NewRecorder(), r)
	if !errors.Is(readErr, ErrBodyTooLarge) || len(got) != 1000 {
		t.Errorf("chunked 5000 bytes: read %d, err %v", len(got), readErr)
	}
	// Chunked exactly at the limit: fine.
	r = httptest.NewRequest("POST", "/", io.NopCloser(strings.NewReader(strings.Repeat("x", 1000))))
	r.ContentLength = -1
	h.ServeHTTP(httptest.NewRecorder(), r)
	if readErr != nil || len(got) != 1000 {
		t.Errorf("chunked 1000 bytes: read %d, err %v", len(got), readErr)
	}
}
