package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rabbitc/rabbitc/hostcheck"
	"github.com/rabbitc/rabbitc/userns"
)

// hostInfo is what rabbitc info prints: what a user needs of podman info.
type hostInfo struct {
	Version   string      `json:"version"`
	Commit    string      `json:"commit"`
	BuildDate string      `json:"buildDate"`
	Go        string      `json:"go"`
	Kernel    string      `json:"kernel"`
	Cgroups   string      `json:"cgroups"`
	StateDir  string      `json:"stateDir"`
	StoreDir  string      `json:"storeDir"`
	UIDMap    []idMapJSON `json:"uidMap"`
	GIDMap    []idMapJSON `json:"gidMap"`
	MapNote   string      `json:"mapNote,omitempty"` // why only the user is mapped
	Network   networkInfo `json:"network"`
	Overlay   string      `json:"overlay"`
}

type idMapJSON struct {
	ContainerID uint32 `json:"containerID"`
	HostID      uint32 `json:"hostID"`
	Size        uint32 `json:"size"`
}

type networkInfo struct {
	Backend string `json:"backend"`
	Path    string `json:"path,omitempty"`
	Version string `json:"version,omitempty"`
	Problem string `json:"problem,omitempty"` // why run would refuse it
}

func newInfoCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "info [--format json]",
		Short: "Print the store and state paths, id mappings, network backend and kernel",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			in := gatherInfo()
			if format == "json" {
				return writeJSON(cmd.OutOrStdout(), in)
			}
			in.print(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "text or json")
	return cmd
}

func gatherInfo() hostInfo {
	store, _ := imageStoreRoot()
	uids, gids, note := userns.PlannedMaps(userns.CurrentConfig())
	s := slirpReport()
	in := hostInfo{
		Version: version, Commit: commit, BuildDate: buildDate,
		Go:     runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		Kernel: "Linux " + hostcheck.KernelRelease(), Cgroups: hostcheck.CgroupLayout(),
		StateDir: stateRootPath(), StoreDir: store,
		UIDMap: idMapsJSON(uids), GIDMap: idMapsJSON(gids), MapNote: note,
		Network: networkInfo{Backend: "slirp4netns", Path: s.Path, Version: s.Version},
		Overlay: "kernel overlayfs with userxattr, in the container's user namespace",
	}
	if s.Err != nil {
		in.Network.Problem = s.Err.Error()
	}
	return in
}

func idMapsJSON(m []userns.IDMap) []idMapJSON {
	out := make([]idMapJSON, len(m))
	for i, l := range m {
		out[i] = idMapJSON(l)
	}
	return out
}

func (in hostInfo) print(w io.Writer) {
	line := func(k, v string) { fmt.Fprintf(w, "%-10s %s\n", k+":", v) }
	line("version", fmt.Sprintf("%s (commit %s, built %s, %s)", in.Version, in.Commit, in.BuildDate, in.Go))
	line("kernel", in.Kernel)
	line("cgroups", in.Cgroups)
	line("state", in.StateDir)
	line("store", in.StoreDir)
	line("uid map", formatMap(in.UIDMap))
	line("gid map", formatMap(in.GIDMap))
	if in.MapNote != "" {
		line("maps", "only your own ids: "+in.MapNote)
	}
	line("network", in.Network.String())
	line("overlay", in.Overlay)
}

// formatMap is a map as its lines in /proc/PID/uid_map would be, joined:
// "0 1000 1, 1 100000 65536" (container id, host id, count).
func formatMap(m []idMapJSON) string {
	s := make([]string, len(m))
	for i, l := range m {
		s[i] = fmt.Sprintf("%d %d %d", l.ContainerID, l.HostID, l.Size)
	}
	return strings.Join(s, ", ")
}

func (n networkInfo) String() string {
	switch {
	case n.Path == "":
		return n.Backend + ": not found in $PATH (see rabbitc doctor)"
	case n.Problem != "":
		return n.Backend + " at " + n.Path + ": " + n.Problem
	case n.Version == "":
		return n.Backend + " of unknown version (" + n.Path + ")"
	}
	return n.Backend + " " + n.Version + " (" + n.Path + ")"
}
