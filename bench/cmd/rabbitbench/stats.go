package main

import (
	"math"
	"sort"
)

// series holds the samples of one metric for one contender.
type series struct {
	group  string // what was measured, e.g. "start, --net none"
	metric string // e.g. "start to exit"
	unit   string // e.g. "ms"
	peer   string
	higher bool // a higher value is better
	vals   []float64
	rounds []int // the round of each value, to pair contenders
}

func (s *series) median() float64 { return quantile(s.vals, 0.5) }

func (s *series) min() float64 {
	m := math.NaN()
	for _, v := range s.vals {
		if math.IsNaN(m) || v < m {
			m = v
		}
	}
	return m
}

func (s *series) max() float64 {
	m := math.NaN()
	for _, v := range s.vals {
		if math.IsNaN(m) || v > m {
			m = v
		}
	}
	return m
}

func quantile(vals []float64, q float64) float64 {
	if len(vals) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), vals...)
	sort.Float64s(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// results keeps every series in the order it was first recorded.
type results struct {
	order  []*series
	index  map[[3]string]*series
	notes  []note
	groups []string // in the order they ran
}

func newResults() *results {
	return &results{index: map[[3]string]*series{}}
}

// begin notes that group runs now, to keep the table in running order.
func (r *results) begin(group string) {
	for _, g := range r.groups {
		if g == group {
			return
		}
	}
	r.groups = append(r.groups, group)
}

func (r *results) get(group, metric, unit, peer string, higher bool) *series {
	k := [3]string{group, metric, peer}
	if s, ok := r.index[k]; ok {
		return s
	}
	s := &series{group: group, metric: metric, unit: unit, peer: peer, higher: higher}
	r.index[k] = s
	r.order = append(r.order, s)
	return s
}

func (r *results) lookup(group, metric, peer string) *series {
	return r.index[[3]string{group, metric, peer}]
}

// ratio is rabbitc's median divided by the peer's median for one metric.
func (r *results) ratio(group, metric, peer string) (float64, bool) {
	return r.ratioOf(group, metric, rabbitcName, peer)
}

// ratioOf is subject's median divided by the peer's median.
func (r *results) ratioOf(group, metric, subject, peer string) (float64, bool) {
	a := r.lookup(group, metric, subject)
	b := r.lookup(group, metric, peer)
	if a == nil || b == nil || len(a.vals) == 0 || len(b.vals) == 0 {
		return math.NaN(), false
	}
	bm := b.median()
	if bm == 0 {
		return math.NaN(), false
	}
	return a.median() / bm, true
}

// pairedRatio is the median over rounds of rabbitc's value over the peer's
// in the same round. Both ran back to back in every round, so a slow spell
// of the machine cancels out of each quotient.
func (r *results) pairedRatio(group, metric, peer string) (float64, bool) {
	return r.pairedRatioOf(group, metric, rabbitcName, peer)
}

// pairedRatioOf is pairedRatio for subject instead of rabbitc.
func (r *results) pairedRatioOf(group, metric, subject, peer string) (float64, bool) {
	a := r.lookup(group, metric, subject)
	b := r.lookup(group, metric, peer)
	if a == nil || b == nil || len(a.rounds) == 0 || len(b.rounds) == 0 {
		return math.NaN(), false
	}
	byRound := map[int]float64{}
	for i, rd := range b.rounds {
		byRound[rd] = b.vals[i]
	}
	var qs []float64
	for i, rd := range a.rounds {
		if v, ok := byRound[rd]; ok && v != 0 {
			qs = append(qs, a.vals[i]/v)
		}
	}
	if len(qs) == 0 {
		return math.NaN(), false
	}
	return quantile(qs, 0.5), true
}

// skip records that peer could not run in group, with the reason.
func (r *results) skip(group, peer, reason string) {
	r.notes = append(r.notes, note{group: group, peer: peer, text: "not run: " + reason})
}

// note records a remark about peer in group, such as failed rounds.
func (r *results) note(group, peer, text string) {
	r.notes = append(r.notes, note{group: group, peer: peer, text: text})
}

type note struct{ group, peer, text string }
