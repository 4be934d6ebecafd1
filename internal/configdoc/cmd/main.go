// Command configdoc rewrites docs/config.md from the config package:
//
//	go run ./internal/configdoc/cmd
package main

import (
	"fmt"
	"os"

	"github.com/tlsedge/tlsedge/internal/configdoc"
)

func main() {
	b, err := configdoc.Generate("config")
	if err == nil {
		err = os.WriteFile("docs/config.md", b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
