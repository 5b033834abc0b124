package cgroups

import (
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func ptr[T any](v T) *T { return &v }

func TestSharesToWeight(t *testing.T) {
	for _, tc := range []struct{ shares, weight uint64 }{
		{2, 1}, {1024, 39}, {262144, 10000}, {512, 20}, {4096, 157},
		{1, 1}, {1 << 40, 10000}, // clamped to v1's range, as the kernel does
	} {
		if got := sharesToWeight(tc.shares); got != tc.weight {
			t.Errorf("sharesToWeight(%d) = %d, want %d", tc.shares, got, tc.weight)
		}
	}
}

func TestBlkioToIOWeight(t *testing.T) {
	for _, tc := range []struct {
		blkio  uint16
		weight uint64
	}{{10, 1}, {500, 4950}, {1000, 10000}, {1, 1}, {5000, 10000}} {
		if got := blkioToIOWeight(tc.blkio); got != tc.weight {
			t.Errorf("blkioToIOWeight(%d) = %d, want %d", tc.blkio, got, tc.weight)
		}
	}
}

func TestFiles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		r      *specs.LinuxResources
		want   []file
		needed bool
		err    string
	}{
		{name: "nil"},
		{name: "empty", r: &specs.LinuxResources{}},
		{name: "devices only (what every engine sends)", r: &specs.LinuxResources{
			Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}},
		{name: "docker's zero blkio weight and empty memory/cpu", r: &specs.LinuxResources{
			Memory: &specs.LinuxMemory{DisableOOMKiller: ptr(false), Swappiness: ptr(uint64(60))},
			CPU:    &specs.LinuxCPU{}, BlockIO: &specs.LinuxBlockIO{Weight: ptr(uint16(0))}}},
		{name: "memory", r: &specs.LinuxResources{Memory: &specs.LinuxMemory{
			Limit: ptr(int64(100 << 20)), Swap: ptr(int64(150 << 20)), Reservation: ptr(int64(50 << 20)), Kernel: ptr(int64(1))}},
			want: []file{{"memory.swap.max", "52428800"}, {"memory.max", "104857600"}, {"memory.low", "52428800"}}, needed: true},
		{name: "memory without swap", r: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(4096))}},
			want: []file{{"memory.max", "4096"}}, needed: true},
		{name: "memory unlimited: swap too", r: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(-1))}},
			want: []file{{"memory.swap.max", "max"}, {"memory.max", "max"}}},
		{name: "swap unlimited", r: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(4096)), Swap: ptr(int64(-1))}},
			want: []file{{"memory.swap.max", "max"}, {"memory.max", "4096"}}, needed: true},
		{name: "swap = memory: no swap", r: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(4096)), Swap: ptr(int64(4096))}},
			want: []file{{"memory.swap.max", "0"}, {"memory.max", "4096"}}, needed: true},
		{name: "swap < memory", r: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(4096)), Swap: ptr(int64(100))}},
			err: "must be >= memory.limit"},
		{name: "swap without memory", r: &specs.LinuxResources{Memory: &specs.LinuxMemory{Swap: ptr(int64(100))}},
			err: "swap is set without a memory limit"},
		{name: "negative memory", r: &specs.LinuxResources{Memory: &specs.LinuxMemory{Reservation: ptr(int64(-2))}},
			err: "memory.reservation -2: must be -1 (unlimited) or positive"},
		{name: "pids", r: &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(100))}},
			want: []file{{"pids.max", "100"}}, needed: true},
		{name: "pids 0 is a limit", r: &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(0))}},
			want: []file{{"pids.max", "0"}}, needed: true},
		{name: "pids -1", r: &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(-1))}},
			want: []file{{"pids.max", "max"}}},
		{name: "cpu", r: &specs.LinuxResources{CPU: &specs.LinuxCPU{
			Shares: ptr(uint64(512)), Quota: ptr(int64(50000)), Period: ptr(uint64(100000)), Burst: ptr(uint64(1000)),
			Idle: ptr(int64(0)), Cpus: "0-1", Mems: "0"}},
			want: []file{{"cpu.weight", "20"}, {"cpu.max", "50000 100000"}, {"cpu.max.burst", "1000"}, {"cpu.idle", "0"},
				{"cpuset.cpus", "0-1"}, {"cpuset.mems", "0"}}, needed: true},
		{name: "cpu shares 1024: the default, nothing written", r: &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: ptr(uint64(1024))}}},
		{name: "cpu quota only", r: &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr(int64(20000))}},
			want: []file{{"cpu.max", "20000"}}, needed: true},
		{name: "cpu period only: unlimited", r: &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr(int64(-1)), Period: ptr(uint64(50000))}},
			want: []file{{"cpu.max", "max 50000"}}},
		{name: "realtime", r: &specs.LinuxResources{CPU: &specs.LinuxCPU{RealtimeRuntime: ptr(int64(950000))}},
			err: "no cgroup v2 equivalent"},
		{name: "io", r: &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{
			Weight: ptr(uint16(500)), LeafWeight: ptr(uint16(300)),
			WeightDevice:            []specs.LinuxWeightDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Weight: ptr(uint16(1000))}},
			ThrottleReadBpsDevice:   []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Rate: 1 << 20}},
			ThrottleWriteIOPSDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 16}, Rate: 0}}}},
			want: []file{{"io.weight", "4950"}, {"io.weight", "8:0 10000"}, {"io.max", "8:0 rbps=1048576"}, {"io.max", "8:16 wiops=max"}}, needed: true},
		{name: "hugetlb", r: &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1 << 30}}},
			want: []file{{"hugetlb.2MB.max", "1073741824"}}, needed: true},
		{name: "hugetlb path", r: &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB/../../x", Limit: 1}}},
			err: "is not of the form 2MB"},
		{name: "rdma", r: &specs.LinuxResources{Rdma: map[string]specs.LinuxRdma{"mlx5_1": {HcaHandles: ptr(uint32(3))}, "mlx4_0": {HcaObjects: ptr(uint32(7))}}},
			want: []file{{"rdma.max", "mlx4_0 hca_handle=max hca_object=7"}, {"rdma.max", "mlx5_1 hca_handle=3 hca_object=max"}}, needed: true},
		{name: "unified after the rest, sorted", r: &specs.LinuxResources{
			Pids:    &specs.LinuxPids{Limit: ptr(int64(10))},
			Unified: map[string]string{"pids.max": "20", "memory.high": "1G", "cgroup.max.descendants": "3"}},
			want: []file{{"pids.max", "10"}, {"cgroup.max.descendants", "3"}, {"memory.high", "1G"}, {"pids.max", "20"}}, needed: true},
		{name: "unified max only", r: &specs.LinuxResources{Unified: map[string]string{"memory.high": "max"}},
			want: []file{{"memory.high", "max"}}},
		{name: "unified ..", r: &specs.LinuxResources{Unified: map[string]string{"..": "1"}}, err: `key ".." is not a file name`},
		{name: "unified ../file", r: &specs.LinuxResources{Unified: map[string]string{"../cgroup.procs": "1"}}, err: `key "../cgroup.procs" is not a file name`},
		{name: "unified sub/file", r: &specs.LinuxResources{Unified: map[string]string{"sub/memory.max": "1"}}, err: `key "sub/memory.max" is not a file name`},
		{name: "unified empty", r: &specs.LinuxResources{Unified: map[string]string{"": "1"}}, err: `key "" is not a file name`},
		{name: "unified cgroup.procs", r: &specs.LinuxResources{Unified: map[string]string{"cgroup.procs": "1"}}, err: `key "cgroup.procs" is not a resource`},
		{name: "unified cgroup.kill", r: &specs.LinuxResources{Unified: map[string]string{"cgroup.kill": "1"}}, err: `key "cgroup.kill" is not a resource`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := files(tc.r)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, %v; want error containing %q", got, err, tc.err)
				}
				if !Needed("", tc.r) {
					t.Errorf("an invalid spec must be Needed, so that New reports it")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("files:\n got %q\nwant %q", got, tc.want)
			}
			if n := Needed("", tc.r); n != tc.needed {
				t.Errorf("Needed(\"\", r) = %v, want %v", n, tc.needed)
			}
			if !Needed("/docker/x", tc.r) {
				t.Errorf("a cgroupsPath always needs a cgroup")
			}
		})
	}
}

func TestControllers(t *testing.T) {
	got := controllers([]file{{"pids.max", "1"}, {"memory.swap.max", "1"}, {"memory.max", "1"}, {"cgroup.max.depth", "1"}, {"cpuset.cpus", "0"}, {"cpu.max", "max"}})
	if want := []string{"pids", "memory", "cpuset", "cpu"}; !slices.Equal(got, want) {
		t.Errorf("controllers = %q, want %q", got, want)
	}
}
