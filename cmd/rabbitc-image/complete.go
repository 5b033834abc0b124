package main

import (
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rabbitc/rabbitc/image"
)

// completeImages completes the images of the store (as rabbitc images
// names them), leaving out those already given; rabbitc's completion of
// rmi, image rm and image inspect asks this tree (`rabbitc-image
// __complete ...`). The store is only read: no directory is made.
func completeImages(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	root, err := storeRoot()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	refs, _ := image.Refs(root)
	var out []cobra.Completion
	for _, ref := range refs {
		if strings.HasPrefix(ref, toComplete) && !slices.Contains(args, ref) {
			out = append(out, ref)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeOneImage completes the one image of image inspect.
func completeOneImage(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return completeImages(cmd, args, toComplete)
}
