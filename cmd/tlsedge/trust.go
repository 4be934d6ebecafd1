package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/config"
)

// runTrust prints where the local CA's root is and how to make clients
// trust it, creating the CA first if this state dir has none yet.
func runTrust(cfg *config.Config, stdout, stderr io.Writer) int {
	log := logrus.New()
	log.Out = stderr
	ca, err := certs.NewLocalCA(certs.LocalCAConfig{Dir: filepath.Join(cfg.StateDir, "ca"), Log: log.WithField("component", "localca")})
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge: local CA: %v\n", err)
		return exitFailed
	}
	fmt.Fprint(stdout, ca.TrustInstructions())
	return exitOK
}
