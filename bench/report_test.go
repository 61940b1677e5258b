package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestReport checks the summary's ratios, the table and that the SVG is
// well-formed XML.
func TestReport(t *testing.T) {
	r := &results{Rounds: 2, Switches: []string{"linux-bridge", "tapswitch"}, Runs: map[string]map[string][]measurement{
		"linux-bridge": {"tcp1": {{Value: 10, SwitchCPU: -1}, {Value: 12, SwitchCPU: -1}}, "ping": {{Value: 30}, {Value: 30}}, "tcp1v6": {{Value: 10}, {Value: 10}}},
		"tapswitch":    {"tcp1": {{Value: 8, SwitchCPU: 90}, {Value: 9.6, SwitchCPU: 100}}, "ping": {{Value: 60}, {Value: 60}}, "tcp1v6": {{Value: 5}, {Value: 5}}},
	}}
	var out bytes.Buffer
	r.printTable(&out)
	if got := r.Summary["tapswitch"]["tcp1"]; got.Median != 8.8 || got.Ratio != 0.8 || got.Min != 8 || got.Max != 9.6 {
		t.Errorf("tapswitch tcp1 summary: got %+v, want median 8.8, ratio 0.8, min 8, max 9.6", got)
	}
	if got := r.Summary["tapswitch"]["tcp1v6"]; got.Ratio != 0.5 || got.Unit != "Gbit/s" {
		t.Errorf("tapswitch tcp1v6 summary: got %+v, want ratio 0.5 in Gbit/s", got)
	}
	for _, want := range []string{"8.80 [8.00-9.60] x0.80", "60.0 [60.0-60.0] x2.00", " 95%", "TCP over IPv6, 1 stream", "5.00 [5.00-5.00] x0.50"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	checkXML(t, r.svg())
}

// checkXML fails t if b is not well-formed XML.
func checkXML(t *testing.T, b []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		if _, err := d.Token(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("SVG: %v", err)
			}
			return
		}
	}
}

// TestReportSuites checks that the overlay pairs are compared with their
// own reference, not the bridge, and get a table of their own.
func TestReportSuites(t *testing.T) {
	r := &results{Rounds: 1, Switches: []string{"linux-bridge", "tapswitch", overlayRef, "vxlan-tapswitch"},
		Suites: map[string]suiteInfo{
			overlayRef:        {Label: "kernel vxlan <-> kernel vxlan", Reference: overlayRef},
			"vxlan-tapswitch": {Label: "tapswitch <-> tapswitch", Reference: overlayRef},
		},
		Runs: map[string]map[string][]measurement{
			"linux-bridge":    {"tcp1": {{Value: 10, SwitchCPU: -1}}},
			"tapswitch":       {"tcp1": {{Value: 8, SwitchCPU: 90}}},
			overlayRef:        {"tcp1": {{Value: 6, SwitchCPU: -1}}},
			"vxlan-tapswitch": {"tcp1": {{Value: 3, SwitchCPU: 150}}},
		}}
	var out bytes.Buffer
	r.printTable(&out)
	if got := r.Summary["vxlan-tapswitch"]["tcp1"].Ratio; got != 0.5 {
		t.Errorf("vxlan-tapswitch ratio: got %v, want 0.5 (to %s)", got, overlayRef)
	}
	if got := r.Summary[overlayRef]["tcp1"].Ratio; got != 0 {
		t.Errorf("%s ratio: got %v, want 0 (it is the reference)", overlayRef, got)
	}
	lines := strings.Split(out.String(), "\n")
	if strings.Contains(lines[0], overlayRef) {
		t.Errorf("the main table has the overlay as a column: %q", lines[0])
	}
	for _, want := range []string{"kernel vxlan <-> kernel vxlan", "tapswitch <-> tapswitch", "x0.50", "150%"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if got := len(r.panels()); got != len(testOrder)+1 {
		t.Errorf("SVG panels: got %d, want %d (the main tests and the overlay's tcp1)", got, len(testOrder)+1)
	}
	checkXML(t, r.svg())
}

func TestCPUCounters(t *testing.T) {
	if got := procTicks([]int{1 << 30}); got != 0 {
		t.Errorf("procTicks of a missing PID: got %d, want 0", got)
	}
	if machineBusy() == 0 {
		t.Error("/proc/stat: no busy time since boot")
	}
}
