package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// Shell completion. The scripts (`rabbitc completion bash|zsh|fish`, cobra's
// own) call `rabbitc __complete ARGS... WORD`, which cobra answers from the
// whole command tree (newRootCommand) with the functions below: container
// names and IDs from the state directories, images from the store's
// tags.json, and for the image commands, whatever rabbitc-image's own tree
// answers. They are attached in addCompletions, to the whole tree only:
// the trees on the critical path of a container start (newRunRoot,
// newExecRoot) never see them.

// addCompletions attaches the dynamic completions to root's commands.
func addCompletions(root *cobra.Command) {
	markDirs(root, "rootfs")
	for _, c := range root.Commands() {
		switch c.Name() {
		case "run":
			c.ValidArgsFunction = completeRunArgs
			markDirs(c, "rootfs")
			fixedValues(c, "net", "slirp4netns", "none", "host")
			fixedValues(c, "pull", "missing", "always", "never")
		case "exec":
			c.ValidArgsFunction = completeFirst(completeContainers(true))
		case "stop", "kill", "wait":
			c.ValidArgsFunction = completeContainers(true)
		case "rm", "inspect":
			c.ValidArgsFunction = completeContainers(false)
		case "logs":
			c.ValidArgsFunction = completeFirst(completeContainers(false))
		}
		if slices.Contains(imageCommands, c.Name()) {
			c.ValidArgsFunction = completeImageTool
		}
	}
}

func markDirs(c *cobra.Command, flag string) {
	if c.Flags().Lookup(flag) != nil {
		c.MarkFlagDirname(flag)
	}
}

func fixedValues(c *cobra.Command, flag string, values ...string) {
	c.RegisterFlagCompletionFunc(flag, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
}

// completeFirst completes the first argument with f and nothing after it
// (the command of exec runs in the container, not among the host's files).
func completeFirst(f cobra.CompletionFunc) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return f(cmd, args, toComplete)
	}
}

// completeContainers completes container names and short IDs (running
// ones only, or all), leaving out those already given.
func completeContainers(runningOnly bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		sts, err := listStates()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, st := range sts {
			status, code := st.current()
			if runningOnly && status != statusRunning {
				continue
			}
			desc := "running"
			if status != statusRunning {
				desc = "exited (" + strconv.Itoa(code) + ")"
			}
			desc += " " + strings.Join(st.Args, " ")
			for _, ref := range []string{st.Name, st.ID[:12]} {
				if ref != "" && strings.HasPrefix(ref, toComplete) && !slices.Contains(args, ref) {
					out = append(out, cobra.CompletionWithDesc(ref, desc))
				}
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeRunArgs completes the image of `run IMAGE` (none with --rootfs
// or after "--", where the arguments are a command in the rootfs). "--" is
// looked for in the words before the one completed (os.Args: `rabbitc
// __complete run ... WORD`): cobra's completion parses the flags once with
// a "--" of its own, after which pflag's ArgsLenAtDash stays set.
func completeRunArgs(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 || cmd.Flags().Changed("rootfs") || len(os.Args) > 2 && slices.Contains(os.Args[2:len(os.Args)-1], "--") {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, ref := range storedImages() {
		if strings.HasPrefix(ref, toComplete) {
			out = append(out, ref)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// storedImages are the references the image store has (tags.json's keys,
// as rabbitc images lists them), sorted; none if it cannot be read.
func storedImages() []string {
	root, err := imageStoreRoot()
	if err != nil {
		return nil
	}
	var tags struct {
		Tags map[string]json.RawMessage `json:"tags"`
	}
	b, err := os.ReadFile(filepath.Join(root, "tags.json"))
	if err != nil || json.Unmarshal(b, &tags) != nil {
		return nil
	}
	out := make([]string, 0, len(tags.Tags))
	for ref := range tags.Tags {
		out = append(out, ref)
	}
	sort.Strings(out)
	return out
}

// completeImageTool completes an image command (DisableFlagParsing: its
// flags too) by asking rabbitc-image, whose tree has the command's flags
// and arguments.
func completeImageTool(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	tool, err := imageTool()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	argv := append(append([]string{cobra.ShellCompRequestCmd, cmd.Name()}, args...), toComplete)
	out, err := exec.Command(tool, argv...).Output()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return parseCompletions(out)
}

// parseCompletions reads cobra's __complete answer: one completion a line,
// then ":DIRECTIVE".
func parseCompletions(out []byte) ([]cobra.Completion, cobra.ShellCompDirective) {
	var comps []cobra.Completion
	directive := cobra.ShellCompDirectiveNoFileComp
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if d, ok := strings.CutPrefix(line, ":"); ok {
			if n, err := strconv.Atoi(d); err == nil {
				directive = cobra.ShellCompDirective(n)
			}
			continue
		}
		if line != "" {
			comps = append(comps, line)
		}
	}
	return comps, directive
}
