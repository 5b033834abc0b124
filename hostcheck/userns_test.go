package hostcheck

import "testing"

func TestProfileCovers(t *testing.T) {
	const exe = "/usr/local/bin/rabbitc"
	for _, tc := range []struct {
		name, text string
		want       bool
	}{
		{"named profile", "abi <abi/4.0>,\ninclude <tunables/global>\nprofile rabbitc /usr/local/bin/rabbitc flags=(unconfined) {\n  userns,\n}\n", true},
		{"attachment only", "/usr/local/bin/rabbitc flags=(unconfined) {\n  userns,\n}\n", true},
		{"brace without space", "profile rabbitc /usr/local/bin/rabbitc{\n  allow userns,\n}\n", true},
		{"other binary", "profile podman /usr/bin/podman flags=(unconfined) {\n  userns,\n}\n", false},
		{"no userns rule", "profile rabbitc /usr/local/bin/rabbitc flags=(unconfined) {\n  network,\n}\n", false},
		{"commented out", "# profile rabbitc /usr/local/bin/rabbitc {\n#  userns,\n", false},
		{"a profile without attachment", "profile {\n  userns,\n}\nprofile\n", false},
		{"path only in a rule", "profile x /usr/bin/x {\n  userns,\n  /usr/local/bin/rabbitc ix,\n}\n", false},
	} {
		if got := profileCovers(tc.text, exe); got != tc.want {
			t.Errorf("%s: profileCovers = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestUserNamespaceSettings(t *testing.T) {
	for _, tc := range []struct {
		got  Check
		want string
	}{
		{unprivilegedClone("", false), "ok       kernel.unprivileged_userns_clone: not in this kernel (it allows unprivileged user namespaces without it)"},
		{unprivilegedClone("1", true), "ok       kernel.unprivileged_userns_clone: 1"},
		{unprivilegedClone("0", true), "error    kernel.unprivileged_userns_clone: 0: only root may create user namespaces — fix (as root): " +
			"sysctl -w kernel.unprivileged_userns_clone=1 && echo kernel.unprivileged_userns_clone=1 >> /etc/sysctl.d/50-rabbitc.conf"},
		{maxUserNamespaces("63000", true), "ok       user.max_user_namespaces: 63000"},
		{maxUserNamespaces("0", true), "error    user.max_user_namespaces: 0: no user may create a user namespace — fix (as root): " +
			"sysctl -w user.max_user_namespaces=15000 && echo user.max_user_namespaces=15000 >> /etc/sysctl.d/50-rabbitc.conf"},
		{appArmor("", false, "/bin/rabbitc", ""), "ok       kernel.apparmor_restrict_unprivileged_userns: not in this kernel (no AppArmor restriction on user namespaces)"},
		{appArmor("0", true, "/bin/rabbitc", ""), "ok       kernel.apparmor_restrict_unprivileged_userns: 0"},
		{appArmor("1", true, "/bin/rabbitc", "/etc/apparmor.d/rabbitc"), "ok       kernel.apparmor_restrict_unprivileged_userns: 1, and /etc/apparmor.d/rabbitc lets /bin/rabbitc create user namespaces"},
		{appArmor("1", true, "/bin/rabbitc", ""), "error    kernel.apparmor_restrict_unprivileged_userns: 1, and no profile in /etc/apparmor.d lets /bin/rabbitc create user namespaces — fix (as root): " +
			`printf 'abi <abi/4.0>,\ninclude <tunables/global>\nprofile rabbitc /bin/rabbitc flags=(unconfined) {\n  userns,\n}\n' > /etc/apparmor.d/rabbitc && apparmor_parser -r /etc/apparmor.d/rabbitc`},
	} {
		if tc.got.String() != tc.want {
			t.Errorf("got  %s\nwant %s", tc.got, tc.want)
		}
	}
}

// The fix that profileFix writes is a profile that profileCovers accepts.
func TestProfileFixCovers(t *testing.T) {
	fix := profileFix("/opt/rabbitc/bin/rabbitc")
	start, end := len("printf '"), len(fix)-len("' > /etc/apparmor.d/rabbitc && apparmor_parser -r /etc/apparmor.d/rabbitc")
	text := replaceNewlines(fix[start:end])
	if !profileCovers(text, "/opt/rabbitc/bin/rabbitc") {
		t.Errorf("the profile of the fix does not cover the binary:\n%s", text)
	}
}

func replaceNewlines(s string) string {
	out := []byte{}
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && s[i+1] == 'n' {
			out, i = append(out, '\n'), i+1
			continue
		}
		out = append(out, s[i])
	}
	return string(out)
}
