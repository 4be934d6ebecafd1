// Package filter holds tlsedge's request and response filters: each is an
// http.Handler middleware configured by its own small struct, composed per
// app by the server in a documented order. Filters know nothing of the
// server, the certificates or the backends.
package filter
