package main

import "testing"

func TestParseTail(t *testing.T) {
	for in, want := range map[string]int{"all": -1, "-1": -1, "0": 0, "12": 12} {
		if got, err := parseTail(in); got != want || err != nil {
			t.Errorf("parseTail(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-2", "ten", "1.5", "ALL "} {
		if _, err := parseTail(in); err == nil {
			t.Errorf("parseTail(%q): no error", in)
		}
	}
}
