package main

import (
	"strings"
	"testing"
)

const wrkOK = `Running 2s test @ https://127.0.0.1:8443/small
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.02ms    1.93ms  38.12ms   82.10%
    Req/Sec    16.12k     5.70k   25.32k    56.25%
  Latency Distribution
     50%    3.56ms
     75%    5.13ms
     90%    6.29ms
     99%    9.84ms
  32064 requests in 2.00s, 38.34MB read
Requests/sec:  16024.39
Transfer/sec:     19.16MB
`

const wrkErrors = `Running 2s test @ https://127.0.0.1:8443/small
  1 threads and 64 connections
  32000 requests in 2.00s, 38.34MB read
  Socket errors: connect 0, read 100, write 0, timeout 60
  Non-2xx or 3xx responses: 7840
Requests/sec:  16000.00
Transfer/sec:     19.16MB
`

const h2loadOK = `starting benchmark...
spawning thread #0: 32 total client(s). Timing-based test with 1s of warm-up time and 2s of main duration for measurements.
TLS Protocol: TLSv1.3
Cipher: TLS_AES_128_GCM_SHA256
Server Temp Key: X25519 253 bits
Application protocol: h2

finished in 3.00s, 12809.00 req/s, 12.83MB/s
requests: 25618 total, 25618 started, 25618 done, 25618 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 25600 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 25.61MB (26899618) total, 223.30KB (228712) headers (space savings 95.81%), 27.59MB (28929024) data
`

func TestParseLoaders(t *testing.T) {
	tests := []struct {
		name    string
		parse   func(string) (load, error)
		out     string
		want    load
		wantOK  float64
		wantErr bool
	}{
		{"wrk", parseWrk, wrkOK, load{RPS: 16024.39, Requests: 32064, P50: "3.56ms", P99: "9.84ms"}, 16024.39, false},
		{"wrk errors", parseWrk, wrkErrors, load{RPS: 16000, Requests: 32000, Bad: 8000}, 12000, false},
		{"wrk nothing", parseWrk, "unable to connect to 127.0.0.1:1 Connection refused\n", load{}, 0, true},
		{"h2load", parseH2load, h2loadOK, load{RPS: 12809, Requests: 25618, Proto: "h2"}, 12809, false},
		{"h2load http/1.1", parseH2load, strings.Replace(h2loadOK, "protocol: h2", "protocol: http/1.1", 1),
			load{RPS: 12809, Requests: 25618, Bad: 25618, Proto: "http/1.1"}, 0, false},
		{"h2load failures", parseH2load, strings.NewReplacer("25618 succeeded, 0 failed", "25000 succeeded, 618 failed",
			"0 5xx", "2500 5xx").Replace(h2loadOK), load{RPS: 12809, Requests: 25618, Bad: 3118, Proto: "h2"}, 12809 * 22500.0 / 25618, false},
		{"h2load nothing", parseH2load, "No protocol negotiated. Aborted\n", load{}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.parse(tt.out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
			if ok := got.OK(); ok < tt.wantOK-0.01 || ok > tt.wantOK+0.01 {
				t.Errorf("OK() = %.2f, want %.2f", ok, tt.wantOK)
			}
		})
	}
}

func TestThousands(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999.4: "999", 1000: "1,000", 31234.6: "31,235", 1234567: "1,234,567"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
}
