package userns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"

	"github.com/rootless-containers/rootlesskit/v3/pkg/parent/idtools"
)

// Config says whose ids the container's root and its other ids map to.
type Config struct {
	UID, GID int    // the invoking user's ids: container root maps to them
	Username string // for the /etc/subuid lookup by name ("" to look up by uid only)
}

// CurrentConfig describes the invoking user.
func CurrentConfig() Config {
	c := Config{UID: os.Getuid(), GID: os.Getgid()}
	if u, err := user.LookupId(strconv.Itoa(c.UID)); err == nil {
		c.Username = u.Username
	}
	return c
}

// Range is one contiguous block of subordinate ids, as in /etc/subuid.
type Range = idtools.SubIDRange

// MapArgs returns the arguments of newuidmap/newgidmap (after the program
// name) that map container id 0 to hostID and container ids 1.. onto the
// subordinate ranges, in order, back to back.
func MapArgs(pid, hostID int, ranges []Range) []string {
	args := []string{strconv.Itoa(pid), "0", strconv.Itoa(hostID), "1"}
	next := 1
	for _, r := range ranges {
		if r.Length <= 0 {
			continue
		}
		args = append(args, strconv.Itoa(next), strconv.Itoa(r.Start), strconv.Itoa(r.Length))
		next += r.Length
	}
	return args
}

// MappedIDs is how many container ids a map made by MapArgs covers.
func MappedIDs(ranges []Range) int {
	n := 1
	for _, r := range ranges {
		if r.Length > 0 {
			n += r.Length
		}
	}
	return n
}

// Maps is what WriteMaps did: how many ids are mapped, and a warning when it
// had to fall back to mapping the user alone.
type Maps struct {
	UIDs, GIDs int
	Warning    string
}

// WriteMaps writes the uid and gid maps of the user namespace of pid. With
// newuidmap/newgidmap and subordinate ranges the container gets root plus the
// ranges; without them it falls back to mapping only the user (setgroups is
// denied first, as the kernel requires), and says how to get full ranges.
// As root, root maps to itself with 65536 ids.
func WriteMaps(pid int, cfg Config) (Maps, error) {
	if cfg.UID == 0 {
		return writeIdentityMaps(pid)
	}
	p := planMaps(cfg)
	if p.fallback != "" {
		if err := writeSingleMaps(pid, cfg); err != nil {
			return Maps{}, err
		}
		return Maps{UIDs: 1, GIDs: 1, Warning: "mapping only your own uid and gid into the container: " + p.fallback}, nil
	}
	// The two maps are independent files: both setuid helpers run at once,
	// which takes one helper's start-up (~3 ms here) off every container start.
	gidDone := make(chan error, 1)
	go func() { gidDone <- runMapTool(p.gidTool, MapArgs(pid, cfg.GID, p.gidRanges), "/etc/subgid", cfg) }()
	uidErr := runMapTool(p.uidTool, MapArgs(pid, cfg.UID, p.uidRanges), "/etc/subuid", cfg)
	if err := <-gidDone; err != nil {
		return Maps{}, err
	}
	if uidErr != nil {
		return Maps{}, uidErr
	}
	return Maps{UIDs: MappedIDs(p.uidRanges), GIDs: MappedIDs(p.gidRanges)}, nil
}

// mapPlan is how WriteMaps maps a user other than root: the subordinate
// ranges through the helpers, or, when either is missing, the user alone
// (fallback says why).
type mapPlan struct {
	uidRanges, gidRanges []Range
	uidTool, gidTool     string
	fallback             string
}

func planMaps(cfg Config) mapPlan {
	var p mapPlan
	uidRanges, gidRanges, rangesErr := idtools.GetSubIDRanges(cfg.UID, cfg.Username)
	uidTool, uidErr := exec.LookPath("newuidmap")
	gidTool, gidErr := exec.LookPath("newgidmap")
	switch {
	case uidErr != nil || gidErr != nil:
		p.fallback = "newuidmap/newgidmap not found in $PATH (install the uidmap package)"
	case rangesErr != nil:
		name := cfg.Username
		if name == "" {
			name = strconv.Itoa(cfg.UID)
		}
		p.fallback = fmt.Sprintf("%s (add \"%s:100000:65536\" to /etc/subuid and /etc/subgid)", firstLine(rangesErr), name)
	default:
		p = mapPlan{uidRanges: uidRanges, gidRanges: gidRanges, uidTool: uidTool, gidTool: gidTool}
	}
	return p
}

// PlannedMaps is what WriteMaps would write for cfg, without writing: the
// uid and gid maps, and its warning when it maps the user alone.
func PlannedMaps(cfg Config) (uids, gids []IDMap, warning string) {
	if cfg.UID == 0 {
		root := []IDMap{{0, 0, 65536}}
		return root, root, ""
	}
	p := planMaps(cfg)
	if p.fallback != "" {
		return []IDMap{{0, uint32(cfg.UID), 1}}, []IDMap{{0, uint32(cfg.GID), 1}}, p.fallback
	}
	return mapLines(cfg.UID, p.uidRanges), mapLines(cfg.GID, p.gidRanges), ""
}

// mapLines is the map MapArgs gives newuidmap, as lines.
func mapLines(hostID int, ranges []Range) []IDMap {
	out := []IDMap{{0, uint32(hostID), 1}}
	next := 1
	for _, r := range ranges {
		if r.Length > 0 {
			out = append(out, IDMap{uint32(next), uint32(r.Start), uint32(r.Length)})
			next += r.Length
		}
	}
	return out
}

func runMapTool(tool string, args []string, file string, cfg Config) error {
	out, err := exec.Command(tool, args...).CombinedOutput()
	if err != nil {
		name := cfg.Username
		if name == "" {
			name = strconv.Itoa(cfg.UID)
		}
		return fmt.Errorf("%s %s: %w: %s (check the %q ranges in %s, and that %s is setuid root or has file capabilities)",
			shortName(tool), strings.Join(args, " "), err, firstLine(errors.New(strings.TrimSpace(string(out)))), name, file, tool)
	}
	return nil
}

func writeSingleMaps(pid int, cfg Config) error {
	base := "/proc/" + strconv.Itoa(pid) + "/"
	if err := os.WriteFile(base+"setgroups", []byte("deny"), 0); err != nil {
		return fmt.Errorf("write %ssetgroups: %w", base, err)
	}
	if err := os.WriteFile(base+"uid_map", []byte(fmt.Sprintf("0 %d 1\n", cfg.UID)), 0); err != nil {
		return fmt.Errorf("write %suid_map: %w", base, err)
	}
	if err := os.WriteFile(base+"gid_map", []byte(fmt.Sprintf("0 %d 1\n", cfg.GID)), 0); err != nil {
		return fmt.Errorf("write %sgid_map: %w", base, err)
	}
	return nil
}

func writeIdentityMaps(pid int) (Maps, error) {
	base := "/proc/" + strconv.Itoa(pid) + "/"
	for _, f := range []string{"uid_map", "gid_map"} {
		if err := os.WriteFile(base+f, []byte("0 0 65536\n"), 0); err != nil {
			return Maps{}, fmt.Errorf("write %s%s: %w", base, f, err)
		}
	}
	return Maps{UIDs: 65536, GIDs: 65536}, nil
}

func shortName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// IDMap is one line of a uid or gid map: Size ids from ContainerID inside
// onto HostID in the parent namespace (the runtime spec's LinuxIDMapping).
type IDMap struct{ ContainerID, HostID, Size uint32 }

// WriteGivenMaps writes the maps an OCI config gives for the user namespace
// of pid. It writes them itself where the kernel lets it (rabbitc has
// CAP_SETUID and CAP_SETGID over the namespace's parent: real root, or
// root in an engine's user namespace), else through newuidmap and
// newgidmap, which allow what /etc/subuid and /etc/subgid give the user.
func WriteGivenMaps(pid int, uids, gids []IDMap) error {
	if len(uids) == 0 || len(gids) == 0 {
		return errors.New("a new user namespace needs linux.uidMappings and linux.gidMappings in config.json")
	}
	base := "/proc/" + strconv.Itoa(pid) + "/"
	format := func(m []IDMap) string {
		var b strings.Builder
		for _, l := range m {
			fmt.Fprintf(&b, "%d %d %d\n", l.ContainerID, l.HostID, l.Size)
		}
		return b.String()
	}
	errU := os.WriteFile(base+"uid_map", []byte(format(uids)), 0)
	errG := error(nil)
	if errU == nil {
		errG = os.WriteFile(base+"gid_map", []byte(format(gids)), 0)
	}
	if errU == nil && errG == nil {
		return nil
	}
	args := func(m []IDMap) []string {
		a := []string{strconv.Itoa(pid)}
		for _, l := range m {
			a = append(a, strconv.FormatUint(uint64(l.ContainerID), 10), strconv.FormatUint(uint64(l.HostID), 10), strconv.FormatUint(uint64(l.Size), 10))
		}
		return a
	}
	cfg := CurrentConfig()
	if errU != nil {
		tool, err := exec.LookPath("newuidmap")
		if err != nil {
			return fmt.Errorf("write %suid_map: %w, and newuidmap is not in $PATH (install the uidmap package)", base, errU)
		}
		if err := runMapTool(tool, args(uids), "/etc/subuid", cfg); err != nil {
			return err
		}
	}
	tool, err := exec.LookPath("newgidmap")
	if err != nil {
		return fmt.Errorf("write %sgid_map: %w, and newgidmap is not in $PATH (install the uidmap package)", base, errG)
	}
	return runMapTool(tool, args(gids), "/etc/subgid", cfg)
}

// SubIDCount is how many ids WriteMaps would map for cfg: root plus the
// subordinate ranges (65536 as root), without writing anything.
func SubIDCount(cfg Config) (Maps, error) {
	if cfg.UID == 0 {
		return Maps{UIDs: 65536, GIDs: 65536}, nil
	}
	uidRanges, gidRanges, err := idtools.GetSubIDRanges(cfg.UID, cfg.Username)
	if err != nil {
		return Maps{UIDs: 1, GIDs: 1}, err
	}
	return Maps{UIDs: MappedIDs(uidRanges), GIDs: MappedIDs(gidRanges)}, nil
}
