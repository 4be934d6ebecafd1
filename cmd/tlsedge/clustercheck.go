package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/tlsedge/tlsedge/cluster"
	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/tlsedge"
)

// runCheckCluster is tlsedge check --cluster: the instances sharing the
// configuration's redis:// storage, and whether each runs the
// configuration given here (the hash they report against this one's).
// Exit 1 when a live instance runs another configuration or Redis does
// not answer.
func runCheckCluster(ctx context.Context, cfg *config.Config, stdout, stderr io.Writer) int {
	if !cfg.Clustered() {
		fmt.Fprintln(stderr, "tlsedge check --cluster: the storage is not redis:// (--storage), so there is no cluster to compare with")
		return exitUsage
	}
	node, err := cluster.Open(cluster.Options{URL: cfg.Storage, InstanceID: "tlsedge-check"})
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge check --cluster: %v\n", err)
		return exitUsage
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	instances, err := node.Instances(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge check --cluster: %v\n", err)
		return exitFailed
	}
	want := tlsedge.ConfigHash(cfg)
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tCONFIG\tVERSION\tLAST SEEN\tADMIN\tVERDICT")
	differ, live := 0, 0
	for _, in := range instances {
		verdict := "same configuration"
		if in.ConfigHash != want {
			verdict = "DIFFERENT configuration"
		}
		state := "live"
		if !node.Live(in, now) {
			state = "gone"
			verdict = "(stopped) " + verdict
		} else {
			live++
			if in.ConfigHash != want {
				differ++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s ago (%s)\t%d\t%s\n", in.ID, in.ConfigHash, in.Version,
			now.Sub(in.Seen).Round(time.Second), state, in.AdminVersion, verdict)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%d live instance(s) on %s; this configuration is %s\n", live, node.Where(), want)
	if differ > 0 {
		fmt.Fprintf(stderr, "%d live instance(s) run another configuration\n", differ)
		return exitFailed
	}
	return exitOK
}
