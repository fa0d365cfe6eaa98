// Command cexlgen writes Mixer's expression test table (ilt/tests.go) as JSON on stdout.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"cexlgen/ilt"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: cexlgen PATH-TO-tests.go SOURCE-LABEL")
		os.Exit(2)
	}
	table, err := ilt.Dump(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	out.SetEscapeHTML(false)
	if err := out.Encode(table); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
