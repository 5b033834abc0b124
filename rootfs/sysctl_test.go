package rootfs

import "testing"

func TestCheckSysctl(t *testing.T) {
	for _, tc := range []struct {
		key           string
		ipc, uts, net bool
		ok            bool
	}{
		{"kernel.shmmax", true, false, false, true},
		{"kernel.shmmax", false, true, true, false},
		{"kernel.msgmax", true, false, false, true},
		{"kernel.sem", true, false, false, true},
		{"fs.mqueue.msg_max", true, false, false, true},
		{"kernel.hostname", false, true, false, true},
		{"kernel.hostname", true, false, true, false},
		{"net.ipv4.ip_forward", false, false, true, true},
		{"net.ipv4.ip_forward", true, true, false, false},
		{"kernel.pid_max", true, true, true, false},
		{"vm.swappiness", true, true, true, false},
		{"net/../../kernel", true, true, true, false},
		{"net.ipv4..x", true, true, true, false},
		{"", true, true, true, false},
	} {
		err := CheckSysctl(tc.key, tc.ipc, tc.uts, tc.net)
		if (err == nil) != tc.ok {
			t.Errorf("CheckSysctl(%q, ipc %v, uts %v, net %v) = %v, want ok %v", tc.key, tc.ipc, tc.uts, tc.net, err, tc.ok)
		}
	}
}
