// Package gendocs writes the man pages and shell completion scripts of a
// cobra command tree, for `make docs` (and so `make install` and `make
// deb`).
//
// It is linked only into the generators, rabbitc and rabbitc-image built
// with -tags rabbitc_gendocs (cmd/rabbitc/gendocs.go,
// cmd/rabbitc-image/gendocs.go), never into the binaries that are
// installed: cobra's doc package and its Markdown and YAML libraries would
// add their package initialisation to every start of rabbitc, three or four
// per container. The generators build the same command trees as the
// binaries, from the same package main, so the pages cannot drift from the
// flags.
package gendocs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// ManPages writes a section 1 page for each available command of root's
// tree (hidden ones and cobra's help left out) into dir, named as man
// looks them up: rabbitc-run.1 for `rabbitc run`. skip leaves out commands
// whose pages another tree writes (their subcommands too). The date is
// $SOURCE_DATE_EPOCH's when set (cobra's doc package reads it), so that a
// package build is reproducible.
func ManPages(root *cobra.Command, dir, version string, skip func(*cobra.Command) bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var walk func(c *cobra.Command) error
	walk = func(c *cobra.Command) error {
		if skip != nil && skip(c) || !c.IsAvailableCommand() || c.IsAdditionalHelpTopicCommand() {
			return nil
		}
		c.DisableAutoGenTag = true
		header := &doc.GenManHeader{Section: "1", Source: "rabbitc " + version, Manual: "rabbitc manual"}
		var buf bytes.Buffer
		if err := doc.GenMan(c, header, &buf); err != nil {
			return fmt.Errorf("man page of %s: %w", c.CommandPath(), err)
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1"
		if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
			return err
		}
		for _, sub := range c.Commands() {
			if err := walk(sub); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(root)
}

// Completions writes root's completion scripts for bash, zsh and fish into
// dir, as `rabbitc completion SHELL` prints them (with descriptions):
// NAME.bash, _NAME and NAME.fish. They ask the binary itself for the
// completions (`NAME __complete ...`).
func Completions(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name := root.Name()
	for file, gen := range map[string]func(*bytes.Buffer) error{
		name + ".bash": func(b *bytes.Buffer) error { return root.GenBashCompletionV2(b, true) },
		"_" + name:     func(b *bytes.Buffer) error { return root.GenZshCompletion(b) },
		name + ".fish": func(b *bytes.Buffer) error { return root.GenFishCompletion(b, true) },
	} {
		var buf bytes.Buffer
		if err := gen(&buf); err != nil {
			return fmt.Errorf("completion script %s: %w", file, err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}
