// Command rabbitc-image is rabbitc's image tool: pull, images, rmi, image
// prune/inspect, and `resolve`, which rabbitc runs for `run IMAGE`. It is a
// binary of its own, beside rabbitc, because its libraries (the registry
// client, TLS, HTTP, the decompressors) cost every process that links them
// ~3.5 ms of package initialisation at start (GODEBUG=inittrace=1 here: 6.2
// against 2.7 ms), and rabbitc's own binary starts three or four times per
// container and once per exec. rabbitc execs it for the image commands; users
// call rabbitc, not this.
package main

import (
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/rabbitc/rabbitc/userns"
)

// newRootCommand is rabbitc-image's command tree (named rabbitc: users
// reach it as rabbitc's image commands).
func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "rabbitc",
		Short:         "rabbitc's images",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newPullCommand(), newImagesCommand(), newRmiCommand(), newImageCommand(), newResolveCommand(), newSystemCommand(), newLoginCommand(), newLogoutCommand())
	return root
}

// removeTrees removes paths, from a user namespace with the containers'
// mappings for the files the user cannot remove.
func removeTrees(paths ...string) error {
	return userns.RemoveTrees("/proc/self/exe", paths...)
}

func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + " seconds"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + " minutes"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + " hours"
	}
	return strconv.Itoa(int(d.Hours()/24)) + " days"
}
