package main

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// tests in the order of the table and the chart.
var testOrder = []string{"tcp1", "tcp2", "tcp1v6", "udp64", "lossfree", "ping"}

// results are every measurement of a run, and what the JSON file holds.
type results struct {
	Date     string   `json:"date"`
	Host     hostInfo `json:"host"`
	Rounds   int      `json:"rounds"`
	Quick    bool     `json:"quick"`
	Seconds  float64  `json:"seconds"`
	Switches []string `json:"switches"`
	// Suites are the switches compared with another reference than the
	// Linux bridge, on their own tests (the overlay pairs, overlay.go).
	Suites map[string]suiteInfo `json:"suites,omitempty"`
	// Runs maps switch, then test, to the measurements of each round.
	Runs map[string]map[string][]measurement `json:"runs"`
	// Summary maps switch, then test, to the median, min and max.
	Summary map[string]map[string]summary `json:"summary"`
}

// suiteInfo is what the report needs of a suite: its row and its
// reference.
type suiteInfo struct {
	Label     string `json:"label"`
	Reference string `json:"reference"`
}

type hostInfo struct {
	Kernel string `json:"kernel"`
	CPUs   int    `json:"cpus"`
	Load   string `json:"loadavg_at_start"`
	// CC is the TCP congestion control the TCP rows ran with. It moves
	// them much: on the 2-core machine, kernel vxlan <-> kernel vxlan made
	// 14.5 Gbit/s with bbr (its pacing holds it) and 31.9 with cubic.
	CC string `json:"tcp_congestion_control"`
}

type summary struct {
	Unit   string  `json:"unit"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	// Ratio is Median over the median of the switch's reference: the
	// Linux bridge, or for a suite its own (kernel vxlan for the overlay).
	Ratio     float64 `json:"ratio"`
	SwitchCPU float64 `json:"switch_cpu_pct_median"`
}

func newResults(ts []topology, rounds int, quick bool) *results {
	r := &results{Date: time.Now().UTC().Format(time.RFC3339), Rounds: rounds, Quick: quick,
		Runs: map[string]map[string][]measurement{}}
	for _, t := range ts {
		r.Switches = append(r.Switches, t.name())
		r.Runs[t.name()] = map[string][]measurement{}
		if s, ok := t.(suite); ok {
			if r.Suites == nil {
				r.Suites = map[string]suiteInfo{}
			}
			r.Suites[t.name()] = suiteInfo{Label: s.label(), Reference: s.reference()}
		}
	}
	k, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	l, _ := os.ReadFile("/proc/loadavg")
	r.Host = hostInfo{Kernel: strings.TrimSpace(string(k)), CPUs: cpus(), Load: strings.TrimSpace(string(l)), CC: congestionControl()}
	return r
}

func cpus() int {
	b, _ := os.ReadFile("/proc/stat")
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "cpu") && !strings.HasPrefix(line, "cpu ") {
			n++
		}
	}
	return n
}

func (r *results) add(sw, test string, m measurement) {
	r.Runs[sw][test] = append(r.Runs[sw][test], m)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// summarize fills Summary.
func (r *results) summarize() {
	r.Summary = map[string]map[string]summary{}
	for _, sw := range r.Switches {
		r.Summary[sw] = map[string]summary{}
		for _, test := range testOrder {
			ms := r.Runs[sw][test]
			if len(ms) == 0 {
				continue
			}
			var v, c []float64
			for _, m := range ms {
				v = append(v, m.Value)
				c = append(c, m.SwitchCPU)
			}
			r.Summary[sw][test] = summary{Unit: units[test], Median: median(v), Min: slices.Min(v), Max: slices.Max(v), SwitchCPU: median(c)}
		}
	}
	for _, sw := range r.Switches {
		if sw == r.reference(sw) {
			continue
		}
		for test, s := range r.Summary[sw] {
			if ref, ok := r.Summary[r.reference(sw)][test]; ok && ref.Median > 0 {
				s.Ratio = s.Median / ref.Median
				r.Summary[sw][test] = s
			}
		}
	}
}

// reference returns the name of the switch sw's ratios are to.
func (r *results) reference(sw string) string {
	if s, ok := r.Suites[sw]; ok {
		return s.Reference
	}
	return "linux-bridge"
}

// mainSwitches are the switches compared with the Linux bridge, in order.
func (r *results) mainSwitches() []string {
	var out []string
	for _, sw := range r.Switches {
		if _, ok := r.Suites[sw]; !ok {
			out = append(out, sw)
		}
	}
	return out
}

// suiteGroups returns the suites grouped by reference, the reference
// first, in the order of Switches.
func (r *results) suiteGroups() [][]string {
	var groups [][]string
	at := map[string]int{}
	for _, sw := range r.Switches {
		s, ok := r.Suites[sw]
		if !ok {
			continue
		}
		i, ok := at[s.Reference]
		if !ok {
			i = len(groups)
			at[s.Reference] = i
			groups = append(groups, []string{s.Reference})
		}
		if sw != s.Reference {
			groups[i] = append(groups[i], sw)
		}
	}
	return groups
}

// groupTests returns the tests, in testOrder, that some switch of sws ran.
func (r *results) groupTests(sws []string) []string {
	var out []string
	for _, test := range testOrder {
		for _, sw := range sws {
			if _, ok := r.Summary[sw][test]; ok {
				out = append(out, test)
				break
			}
		}
	}
	return out
}

// printTable prints one row per test, one column per switch: median
// [min-max] and the ratio to the bridge; then switch CPU for TCP 1 stream.
// The suites follow, a table per reference and test with a row per switch.
func (r *results) printTable(w io.Writer) {
	r.summarize()
	const col = 30
	main := r.mainSwitches()
	if len(main) == 0 {
		// Only suites ran (-only picked them).
		r.printSuites(w)
		r.printFooter(w)
		return
	}
	fmt.Fprintf(w, "%-30s", fmt.Sprintf("median [min-max] of %d round(s)", r.Rounds))
	for _, sw := range main {
		fmt.Fprintf(w, " %*s", col, sw)
	}
	fmt.Fprintln(w)
	for _, test := range testOrder {
		fmt.Fprintf(w, "%-30s", titles[test]+", "+units[test])
		for _, sw := range main {
			s, ok := r.Summary[sw][test]
			cell := "-"
			if ok {
				cell = fmt.Sprintf("%s [%s-%s]", num(s.Median), num(s.Min), num(s.Max))
				if sw != "linux-bridge" && s.Ratio > 0 {
					cell += fmt.Sprintf(" x%.2f", s.Ratio)
				}
			}
			fmt.Fprintf(w, " %*s", col, cell)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%-30s", "switch CPU % (TCP 1 stream)")
	for _, sw := range main {
		cell := "-"
		if s, ok := r.Summary[sw]["tcp1"]; ok {
			cell = cpuStr(s.SwitchCPU)
		}
		fmt.Fprintf(w, " %*s", col, cell)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-30s", "switch CPU % per Gbit/s")
	for _, sw := range main {
		s, ok := r.Summary[sw]["tcp1"]
		cell := "-"
		if ok && s.SwitchCPU >= 0 && s.Median > 0 {
			cell = fmt.Sprintf("%.1f", s.SwitchCPU/s.Median)
		}
		fmt.Fprintf(w, " %*s", col, cell)
	}
	fmt.Fprintln(w)
	r.printSuites(w)
	r.printFooter(w)
}

func (r *results) printFooter(w io.Writer) {
	fmt.Fprintf(w, "\n%d CPUs, kernel %s, TCP congestion control %s, load average at start %s, %.0f s. x = ratio to linux-bridge (to %s for the overlay).\n",
		r.Host.CPUs, r.Host.Kernel, r.Host.CC, r.Host.Load, r.Seconds, overlayRef)
	fmt.Fprintln(w, "UDP: 64-byte payloads (106-byte frames); loss-free: highest paced rate of a bisection losing at most 0.1%.")
}

// printSuites prints a table per suite group and test: a row per switch
// with its label, median [min-max], ratio to the group's reference and
// switch CPU.
func (r *results) printSuites(w io.Writer) {
	for _, g := range r.suiteGroups() {
		for _, test := range r.groupTests(g) {
			fmt.Fprintf(w, "\n%-48s %24s %7s %11s\n", titles[test]+" "+groupTitle(g[0])+", "+units[test], "median [min-max]", "ratio", "switch CPU")
			for _, sw := range g {
				s, ok := r.Summary[sw][test]
				if !ok {
					fmt.Fprintf(w, "%-48s %24s\n", r.label(sw), "-")
					continue
				}
				ratio := "-"
				if sw == g[0] {
					ratio = "1.00"
				} else if s.Ratio > 0 {
					ratio = fmt.Sprintf("x%.2f", s.Ratio)
				}
				fmt.Fprintf(w, "%-48s %24s %7s %11s\n", r.label(sw),
					fmt.Sprintf("%s [%s-%s]", num(s.Median), num(s.Min), num(s.Max)), ratio, cpuStr(s.SwitchCPU))
			}
		}
	}
}

// groupTitle names the suite group whose reference is ref.
func groupTitle(ref string) string {
	if t, ok := groupTitles[ref]; ok {
		return t
	}
	return "(against " + ref + ")"
}

// label is sw's row in a suite's table: its label, or its name.
func (r *results) label(sw string) string {
	if l := r.Suites[sw].Label; l != "" {
		return l
	}
	return sw
}

func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// write writes bench-DATE.json and bench-DATE.svg into dir, and copies
// them to latest.json and latest.svg.
func (r *results) write(dir string) ([]string, error) {
	r.summarize()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	stamp := time.Now().UTC().Format("20060102-150405")
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	svg := r.svg()
	var files []string
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"bench-" + stamp + ".json", js}, {"bench-" + stamp + ".svg", svg},
		{"latest.json", js}, {"latest.svg", svg},
	} {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return files, err
		}
		files = append(files, p)
	}
	return files, nil
}

// colors of the switches in the chart, in the order of Switches.
var colors = []string{"#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"}

// panel is one chart of the SVG: a test, the switches in it and the
// reference its ratios are to.
type panel struct {
	title, test, ref string
	switches         []string
}

// panels are the main tests with the switches compared with the bridge,
// then each suite group's tests.
func (r *results) panels() []panel {
	var ps []panel
	main := r.mainSwitches()
	for _, test := range testOrder {
		ps = append(ps, panel{titles[test], test, "linux-bridge", main})
	}
	for _, g := range r.suiteGroups() {
		for _, test := range r.groupTests(g) {
			ps = append(ps, panel{titles[test] + " " + groupTitle(g[0]), test, g[0], g})
		}
	}
	return ps
}

// svg draws one panel per test (and suite group): a bar per switch at its
// median, a whisker from min to max, the value and the ratio to the
// reference above it.
func (r *results) svg() []byte {
	const pw, ph, top, left, gap = 230, 260, 60, 20, 20
	ps := r.panels()
	width := left + len(ps)*(pw+gap)
	height := top + ph + 90
	color := map[string]string{}
	for j, sw := range r.Switches {
		color[sw] = colors[j%len(colors)]
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15">tapswitch make bench: median [min-max] of %d round(s), %s, %d CPUs, kernel %s, TCP %s</text>`+"\n",
		left, r.Rounds, html.EscapeString(r.Date), r.Host.CPUs, html.EscapeString(r.Host.Kernel), html.EscapeString(r.Host.CC))
	fmt.Fprintf(&b, `<text x="%d" y="40" fill="#555">ping: lower is better; the others: higher is better. ×: ratio to linux-bridge (to %s for the overlay).</text>`+"\n", left, overlayRef)
	for i, p := range ps {
		x0 := left + i*(pw+gap)
		var max float64
		for _, sw := range p.switches {
			if s, ok := r.Summary[sw][p.test]; ok && s.Max > max {
				max = s.Max
			}
		}
		if max == 0 {
			max = 1
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s (%s)</text>`+"\n", x0, top-4, html.EscapeString(p.title), html.EscapeString(units[p.test]))
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>`+"\n", x0, top+ph, x0+pw, top+ph)
		bw := (pw - 10) / max1(len(p.switches))
		for j, sw := range p.switches {
			s, ok := r.Summary[sw][p.test]
			if !ok {
				continue
			}
			y := func(v float64) float64 { return float64(top+ph) - v/max*float64(ph-30) }
			bx := x0 + 5 + j*bw
			fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s"><title>%s: %s</title></rect>`+"\n",
				bx+2, y(s.Median), bw-4, float64(top+ph)-y(s.Median), color[sw], html.EscapeString(sw), num(s.Median))
			cx := float64(bx) + float64(bw)/2
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", cx, y(s.Min), cx, y(s.Max))
			label := num(s.Median)
			if sw != p.ref && s.Ratio > 0 {
				label += fmt.Sprintf(" ×%.2f", s.Ratio)
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9">%s</text>`+"\n", cx, y(s.Max)-4, html.EscapeString(label))
		}
	}
	for j, sw := range r.Switches {
		x := left + j*180
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
			x, top+ph+30, color[sw], x+16, top+ph+40, html.EscapeString(sw))
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}
