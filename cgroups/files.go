package cgroups

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// file is one write into the container's cgroup directory. A name may come
// more than once (io.max takes one device per write).
type file struct {
	name, value string
}

// Needed tells whether the spec asks for a cgroup: a cgroupsPath, or a
// resource that sets a limit. Values that only say "unlimited" ("max") set
// nothing a fresh cgroup does not already have. Device rules never need one:
// cgroup v2 enforces them with BPF, which rabbitc does not load (the user
// namespace already keeps the container from opening device nodes it could
// not open on the host). An invalid r is Needed, so that New reports it.
func Needed(cgroupsPath string, r *specs.LinuxResources) bool {
	if cgroupsPath != "" {
		return true
	}
	fs, err := files(r)
	if err != nil {
		return true
	}
	for _, f := range fs {
		if f.value != "max" && !strings.HasPrefix(f.value, "max ") {
			return true
		}
	}
	return false
}

// files turns r into cgroup v2 writes, in runc's order (pids, memory, io,
// cpu, cpuset, hugetlb, rdma, then unified, which may override any of
// them). Zero means "unset" where runc reads it so; -1 means "max".
//
// Not written, as with runc on cgroup v2: memory.kernel, kernelTCP,
// swappiness, disableOOMKiller, useHierarchy (cgroup v2 has none of them),
// blockIO.leafWeight, network (v1's net_cls/net_prio), devices (see Needed).
func files(r *specs.LinuxResources) ([]file, error) {
	if r == nil {
		return nil, nil
	}
	var fs []file
	if r.Pids != nil && r.Pids.Limit != nil {
		// The runtime spec: -1 is "max", and 0 is a valid limit.
		v := "max"
		if *r.Pids.Limit >= 0 {
			v = strconv.FormatInt(*r.Pids.Limit, 10)
		}
		fs = append(fs, file{"pids.max", v})
	}
	for _, add := range []func(*specs.LinuxResources) ([]file, error){memoryFiles, ioFiles, cpuFiles, hugetlbFiles, rdmaFiles, unifiedFiles} {
		more, err := add(r)
		if err != nil {
			return nil, err
		}
		fs = append(fs, more...)
	}
	return fs, nil
}

// memoryFiles: the spec's swap is memory+swap (cgroup v1's
// memory.memsw.limit_in_bytes); v2's memory.swap.max is swap alone.
// memory.swap.max comes first, as in runc, and memory.high has no field in
// the spec (unified["memory.high"] sets it).
func memoryFiles(r *specs.LinuxResources) ([]file, error) {
	m := r.Memory
	if m == nil {
		return nil, nil
	}
	limit, swap := deref(m.Limit), deref(m.Swap)
	var fs []file
	sw, err := swapMax(swap, limit)
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name, field string
		v           int64
	}{{"memory.swap.max", "swap", sw}, {"memory.max", "limit", limit}, {"memory.low", "reservation", deref(m.Reservation)}} {
		v, err := bytesValue(f.field, f.v)
		if err != nil {
			return nil, err
		}
		if v == "" && f.field == "swap" && swap > 0 {
			v = "0" // swap == limit: no swap at all, as in runc
		}
		if v != "" {
			fs = append(fs, file{f.name, v})
		}
	}
	return fs, nil
}

// swapMax is runc's ConvertMemorySwapToCgroupV2Value: memory.swap.max from
// the spec's memory+swap total.
func swapMax(swap, limit int64) (int64, error) {
	switch {
	case limit == -1 && swap == 0:
		return -1, nil // unlimited memory and no word on swap: both unlimited
	case swap == -1 || swap == 0:
		return swap, nil
	case limit == 0 || limit == -1:
		return 0, errors.New("linux.resources.memory.swap is set without a memory limit")
	case swap < limit:
		return 0, fmt.Errorf("linux.resources.memory.swap (%d) is memory+swap and must be >= memory.limit (%d)", swap, limit)
	}
	return swap - limit, nil
}

// bytesValue: 0 is unset (""), -1 is "max".
func bytesValue(field string, v int64) (string, error) {
	switch {
	case v == 0:
		return "", nil
	case v == -1:
		return "max", nil
	case v < 0:
		return "", fmt.Errorf("linux.resources.memory.%s %d: must be -1 (unlimited) or positive", field, v)
	}
	return strconv.FormatInt(v, 10), nil
}

// ioFiles: blkio weights (10..1000) become io.weight (1..10000); a
// throttle rate of 0 lifts the limit, as it does in v1.
func ioFiles(r *specs.LinuxResources) ([]file, error) {
	b := r.BlockIO
	if b == nil {
		return nil, nil
	}
	var fs []file
	if w := deref(b.Weight); w != 0 {
		fs = append(fs, file{"io.weight", strconv.FormatUint(blkioToIOWeight(w), 10)})
	}
	for _, d := range b.WeightDevice {
		if w := deref(d.Weight); w != 0 {
			fs = append(fs, file{"io.weight", fmt.Sprintf("%d:%d %d", d.Major, d.Minor, blkioToIOWeight(w))})
		}
	}
	for _, t := range []struct {
		key  string
		devs []specs.LinuxThrottleDevice
	}{{"rbps", b.ThrottleReadBpsDevice}, {"wbps", b.ThrottleWriteBpsDevice}, {"riops", b.ThrottleReadIOPSDevice}, {"wiops", b.ThrottleWriteIOPSDevice}} {
		for _, d := range t.devs {
			rate := "max"
			if d.Rate != 0 {
				rate = strconv.FormatUint(d.Rate, 10)
			}
			fs = append(fs, file{"io.max", fmt.Sprintf("%d:%d %s=%s", d.Major, d.Minor, t.key, rate)})
		}
	}
	return fs, nil
}

// blkioToIOWeight is runc's ConvertBlkIOToIOWeightValue, clamped to v1's
// range first so that out-of-range weights do not wrap around.
func blkioToIOWeight(w uint16) uint64 {
	v := uint64(min(max(w, 10), 1000))
	return 1 + (v-10)*9999/990
}

// sharesToWeight is runc's ConvertCPUSharesToCgroupV2Value: cpu.shares
// (2..262144, the kernel's clamp in v1) to cpu.weight (1..10000); 1024, v1's
// default, is 39 (v2's default is 100).
func sharesToWeight(shares uint64) uint64 {
	s := min(max(shares, 2), 262144)
	return 1 + ((s-2)*9999)/262142
}

// cpuFiles writes cpu.max as "QUOTA PERIOD", where a quota <= 0 is "max"
// and a period of 0 keeps the kernel's (100000us).
func cpuFiles(r *specs.LinuxResources) ([]file, error) {
	c := r.CPU
	if c == nil {
		return nil, nil
	}
	if deref(c.RealtimeRuntime) != 0 || deref(c.RealtimePeriod) != 0 {
		return nil, errors.New("linux.resources.cpu.realtimeRuntime and realtimePeriod have no cgroup v2 equivalent")
	}
	var fs []file
	// 1024, v1's default, is what engines send when nobody set a weight
	// (containerd's default spec): it stays v2's default weight, 100, where
	// runc writes 39. So a container that asks for nothing needs no cpu
	// controller, which a hybrid host keeps on v1; relative weights between
	// such containers are the same either way.
	if s := deref(c.Shares); s != 0 && s != 1024 {
		fs = append(fs, file{"cpu.weight", strconv.FormatUint(sharesToWeight(s), 10)})
	}
	if quota, period := deref(c.Quota), deref(c.Period); quota != 0 || period != 0 {
		v := "max"
		if quota > 0 {
			v = strconv.FormatInt(quota, 10)
		}
		if period != 0 {
			v += " " + strconv.FormatUint(period, 10)
		}
		fs = append(fs, file{"cpu.max", v})
	}
	if c.Burst != nil {
		fs = append(fs, file{"cpu.max.burst", strconv.FormatUint(*c.Burst, 10)})
	}
	if c.Idle != nil {
		fs = append(fs, file{"cpu.idle", strconv.FormatInt(*c.Idle, 10)})
	}
	if c.Cpus != "" {
		fs = append(fs, file{"cpuset.cpus", c.Cpus})
	}
	if c.Mems != "" {
		fs = append(fs, file{"cpuset.mems", c.Mems})
	}
	return fs, nil
}

// hugetlbFiles: the page size becomes part of a file name
// (hugetlb.2MB.max), so it may only hold letters and digits.
func hugetlbFiles(r *specs.LinuxResources) ([]file, error) {
	var fs []file
	for _, h := range r.HugepageLimits {
		if h.Pagesize == "" || strings.IndexFunc(h.Pagesize, notAlnum) >= 0 {
			return nil, fmt.Errorf("linux.resources.hugepageLimits: page size %q is not of the form 2MB", h.Pagesize)
		}
		fs = append(fs, file{"hugetlb." + h.Pagesize + ".max", strconv.FormatUint(h.Limit, 10)})
	}
	return fs, nil
}

func notAlnum(c rune) bool {
	return !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z')
}

// rdmaFiles writes one "DEVICE hca_handle=N hca_object=M" line per device.
func rdmaFiles(r *specs.LinuxResources) ([]file, error) {
	var fs []file
	for _, dev := range sortedKeys(r.Rdma) {
		if dev == "" || strings.ContainsAny(dev, " \t\n") {
			return nil, fmt.Errorf("linux.resources.rdma: device name %q", dev)
		}
		l := r.Rdma[dev]
		fs = append(fs, file{"rdma.max", fmt.Sprintf("%s hca_handle=%s hca_object=%s", dev, countValue(l.HcaHandles), countValue(l.HcaObjects))})
	}
	return fs, nil
}

func countValue(v *uint32) string {
	if v == nil {
		return "max"
	}
	return strconv.FormatUint(uint64(*v), 10)
}

// managedFiles are the files through which Apply and Kill place and kill
// processes; a spec's unified map may not write them.
var managedFiles = []string{"cgroup.procs", "cgroup.threads", "cgroup.kill"}

// unifiedFiles writes linux.resources.unified as it is, in key order. A key
// is a file name in the container's cgroup directory: never a path, or it
// would write outside it ("../cgroup.procs", "../../memory.max").
func unifiedFiles(r *specs.LinuxResources) ([]file, error) {
	var fs []file
	for _, k := range sortedKeys(r.Unified) {
		if k == "" || k == "." || k == ".." || strings.ContainsAny(k, "/\x00") {
			return nil, fmt.Errorf("linux.resources.unified: key %q is not a file name", k)
		}
		if slices.Contains(managedFiles, k) {
			return nil, fmt.Errorf("linux.resources.unified: key %q is not a resource (rabbitc places and kills the container's processes itself)", k)
		}
		fs = append(fs, file{k, r.Unified[k]})
	}
	return fs, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
