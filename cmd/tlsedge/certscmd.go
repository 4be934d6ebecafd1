package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/config"
)

// runCerts lists the certificates in ACME storage (the state dir's files,
// or --storage): names, issuer, expiry, when renewal is due, and where.
func runCerts(ctx context.Context, cfg *config.Config, stdout, stderr io.Writer, now time.Time) int {
	store, where, err := certs.ReadStorage(ctx, cfg.Storage, cfg.StateDir)
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge: storage %s: %v\n", cfg.RedactedStorage(), err)
		return exitFailed
	}
	list, err := certs.ListManaged(ctx, store)
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge: %s: %v\n", where, err)
		return exitFailed
	}
	if len(list) == 0 {
		fmt.Fprintf(stdout, "no managed certificates in %s\n", where)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMES\tISSUER\tSERIAL\tNOT AFTER\tRENEWAL DUE\tSTORAGE")
	for _, c := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s (%s)\t%s\t%s\n",
			strings.Join(c.Names, ","), c.Issuer, c.Serial,
			c.NotAfter.UTC().Format(time.RFC3339), left(c.NotAfter.Sub(now)),
			due(c.RenewAt, now), where+": "+c.Folder())
	}
	tw.Flush()
	return exitOK
}

func due(at, now time.Time) string {
	if !at.After(now) {
		return "now"
	}
	return at.UTC().Format(time.RFC3339) + " (in " + left(at.Sub(now)) + ")"
}

// left prints a duration in the largest sensible unit.
func left(d time.Duration) string {
	switch {
	case d < 0:
		return "expired"
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return d.Round(time.Second).String()
}
