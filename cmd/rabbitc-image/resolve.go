package main

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/spf13/cobra"
)

// resolved is what `resolve` prints for rabbitc's `run IMAGE`: the image's
// layer directories and the config docker applies.
type resolved struct {
	Ref    string   `json:"ref"`
	Digest string   `json:"digest"`
	Store  string   `json:"store"`
	Lower  []string `json:"lower"` // the unpacked layers, top first (overlayfs's order)
	Config struct {
		Entrypoint   []string `json:"entrypoint,omitempty"`
		Cmd          []string `json:"cmd,omitempty"`
		Env          []string `json:"env,omitempty"`
		WorkingDir   string   `json:"workingDir,omitempty"`
		User         string   `json:"user,omitempty"`
		StopSignal   string   `json:"stopSignal,omitempty"`
		ExposedPorts []string `json:"exposedPorts,omitempty"`
	} `json:"config"`
}

func newResolveCommand() *cobra.Command {
	po := &pullOptions{}
	cmd := &cobra.Command{
		Use:    "resolve [--pull missing|always|never] IMAGE",
		Short:  "Pull an image as --pull says, unpack its layers, and print them and its config as JSON (for rabbitc run)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, im, err := pullNow(args[0], *po)
			if err != nil {
				return err
			}
			r := resolved{Ref: args[0], Digest: im.Digest.String(), Store: st.Root()}
			for i := len(im.Layers) - 1; i >= 0; i-- {
				r.Lower = append(r.Lower, st.LayerDir(im.Layers[i].DiffID))
			}
			if c := im.Config; c != nil {
				cc := c.Config
				r.Config.Entrypoint, r.Config.Cmd, r.Config.Env = cc.Entrypoint, cc.Cmd, cc.Env
				r.Config.WorkingDir, r.Config.User, r.Config.StopSignal = cc.WorkingDir, cc.User, cc.StopSignal
				for p := range cc.ExposedPorts {
					r.Config.ExposedPorts = append(r.Config.ExposedPorts, p)
				}
				sort.Strings(r.Config.ExposedPorts)
			}
			if len(r.Lower) == 0 {
				return fmt.Errorf("image %s has no layers", args[0])
			}
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
			return nil
		},
	}
	cmd.Flags().StringVar(&po.policy, "pull", "missing", "missing, always or never")
	cmd.Flags().BoolVarP(&po.quiet, "quiet", "q", false, "no progress")
	addPullFlags(cmd, po)
	return cmd
}
