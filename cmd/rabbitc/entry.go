//go:build !rabbitc_gendocs

package main

import "os"

// main is rabbitc's; built with -tags rabbitc_gendocs, the package is the
// generator of the man pages and completion scripts instead (gendocs.go).
func main() {
	closeInherited()
	if len(os.Args) > 1 && os.Args[1] == "init" {
		stage := ""
		if len(os.Args) > 2 {
			stage = os.Args[2]
		}
		os.Exit(initMain(stage))
	}
	os.Exit(cliMain(os.Args[1:]))
}
