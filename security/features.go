package security

import (
	"sort"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// CapName is capability n's name as the runtime spec writes it, such as
// "CAP_NET_ADMIN".
func CapName(n int) string { return capName(n) }

// SeccompActions are the profile actions the compiler takes (the runtime
// spec's features document): all but SCMP_ACT_NOTIFY, which needs an
// agent.
func SeccompActions() []string {
	return []string{string(specs.ActAllow), string(specs.ActErrno), string(specs.ActKill), string(specs.ActKillProcess),
		string(specs.ActKillThread), string(specs.ActLog), string(specs.ActTrace), string(specs.ActTrap)}
}

// SeccompOperators are the argument comparisons the compiler takes.
func SeccompOperators() []string {
	out := make([]string, 0, len(ops))
	for op := range ops {
		out = append(out, string(op))
	}
	sort.Strings(out)
	return out
}

// SeccompArchs are the architectures a filter of this build has a branch
// for.
func SeccompArchs() []string {
	archs := []string{nativeArchName}
	if compatArchName != "" {
		archs = append(archs, compatArchName)
	}
	return archs
}
