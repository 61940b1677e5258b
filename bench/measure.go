package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// measurement is one test's result.
type measurement struct {
	Value float64 `json:"value"` // in the test's unit (units)
	// SwitchCPU is the CPU time the switch's processes used during the
	// test, in % of one core; -1 for the kernel bridge, which has none.
	SwitchCPU float64 `json:"switch_cpu_pct"`
	// MachineCPU is the busy time of all cores, in % of one core.
	MachineCPU float64 `json:"machine_cpu_pct"`
	// Max is the largest ping RTT (µs), for spikes; 0 for other tests.
	Max float64 `json:"max,omitempty"`
}

// units of each test's Value.
var units = map[string]string{
	"tcp1": "Gbit/s", "tcp2": "Gbit/s", "tcp1v6": "Gbit/s", "udp64": "kpps", "lossfree": "kpps", "ping": "µs",
}

// titles of the tests for the table and the chart.
var titles = map[string]string{
	"tcp1":     "TCP, 1 stream",
	"tcp2":     "TCP, 2 streams",
	"tcp1v6":   "TCP over IPv6, 1 stream",
	"udp64":    "UDP 64 B delivered, unpaced",
	"lossfree": "UDP 64 B loss-free rate",
	"ping":     "ping RTT (avg)",
}

func (m measurement) String() string {
	return fmt.Sprintf("%8.2f  machine CPU %3.0f%%  switch CPU %s", m.Value, m.MachineCPU, cpuStr(m.SwitchCPU))
}

func cpuStr(c float64) string {
	if c < 0 {
		return "  -"
	}
	return fmt.Sprintf("%3.0f%%", c)
}

// measure runs one test on t.
func measure(ctx context.Context, t topology, test string, p params) (measurement, error) {
	cpu := startCPU(t.pids())
	var m measurement
	var err error
	switch test {
	case "tcp1":
		m.Value, err = tcp(ctx, t, p.tcpSecs, 1)
	case "tcp2":
		m.Value, err = tcp(ctx, t, p.tcpSecs, 2)
	case "tcp1v6":
		m.Value, err = tcpTo(ctx, t, t.serverIP6(), p.tcpSecs, 1)
	case "udp64":
		var r udpResult
		r, err = udp(ctx, t, p.tcpSecs, 0)
		m.Value = r.deliveredKpps()
	case "lossfree":
		m.Value, err = sweep(ctx, t, p)
	case "ping":
		m.Value, m.Max, err = ping(ctx, t, p.pings)
	}
	m.SwitchCPU, m.MachineCPU = cpu.stop()
	return m, err
}

// iperf3 runs an iperf3 server in t's server namespace and the client with
// args in its client namespace, and returns the client's JSON report.
func iperf3(ctx context.Context, t topology, args ...string) ([]byte, error) {
	return iperf3To(ctx, t, t.serverIP(), args...)
}

// iperf3To is iperf3 with the client connecting to dst.
func iperf3To(ctx context.Context, t topology, dst string, args ...string) ([]byte, error) {
	srv := exec.CommandContext(ctx, "ip", "netns", "exec", t.server(), "iperf3", "-s", "-1", "-p", "5201", "--forceflush")
	out, err := srv.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := srv.Start(); err != nil {
		return nil, err
	}
	defer func() {
		srv.Process.Kill() // by PID: the iperf3 server this call started
		srv.Wait()
	}()
	// iperf3 prints "Server listening on 5201" once it listens.
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := false
		for sc.Scan() {
			if !ok && strings.Contains(sc.Text(), "listening") {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			return nil, fmt.Errorf("iperf3 server did not start")
		}
	case <-time.After(5 * time.Second):
		return nil, fmt.Errorf("iperf3 server did not start within 5s")
	}
	cargs := append([]string{"netns", "exec", t.client(), "iperf3", "-c", dst, "-p", "5201", "-J"}, args...)
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	rep, err := exec.CommandContext(cctx, "ip", cargs...).Output()
	if err != nil {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(rep, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("iperf3: %s", e.Error)
		}
		return nil, fmt.Errorf("iperf3: %w", err)
	}
	return rep, nil
}

// tcp returns the received throughput in Gbit/s.
func tcp(ctx context.Context, t topology, secs, streams int) (float64, error) {
	return tcpTo(ctx, t, t.serverIP(), secs, streams)
}

// tcpTo is tcp to the server's address dst (its IPv6 one, for tcp1v6).
func tcpTo(ctx context.Context, t topology, dst string, secs, streams int) (float64, error) {
	rep, err := iperf3To(ctx, t, dst, "-t", strconv.Itoa(secs), "-P", strconv.Itoa(streams))
	if err != nil {
		return 0, err
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(rep, &r); err != nil {
		return 0, err
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, nil
}

// udpPayload is the UDP payload of the UDP tests: 64 bytes (a 106-byte
// Ethernet frame).
const udpPayload = 64

type udpResult struct {
	packets, lost int
	seconds       float64
}

func (r udpResult) deliveredKpps() float64 {
	if r.seconds == 0 {
		return 0
	}
	return float64(r.packets-r.lost) / r.seconds / 1000
}

// udp sends 64-byte datagrams for secs seconds at kpps thousand packets/s
// (0: as fast as the client can).
func udp(ctx context.Context, t topology, secs int, kpps float64) (udpResult, error) {
	rate := "0"
	if kpps > 0 {
		rate = strconv.FormatInt(int64(kpps*1000*udpPayload*8), 10)
	}
	// -w 4M: socket buffers of 4 MiB (net.core.rmem_max here) on both
	// ends; with the default 208 KiB the receiving iperf3 itself drops
	// datagrams in bursts at 60 kpps, even over the Linux bridge.
	rep, err := iperf3(ctx, t, "-u", "-l", strconv.Itoa(udpPayload), "-b", rate, "-t", strconv.Itoa(secs), "-w", "4M")
	if err != nil {
		return udpResult{}, err
	}
	var r struct {
		End struct {
			Sum struct {
				Packets     int     `json:"packets"`
				LostPackets int     `json:"lost_packets"`
				Seconds     float64 `json:"seconds"`
			} `json:"sum"`
		} `json:"end"`
	}
	if err := json.Unmarshal(rep, &r); err != nil {
		return udpResult{}, err
	}
	return udpResult{r.End.Sum.Packets, r.End.Sum.LostPackets, r.End.Sum.Seconds}, nil
}

// lossFree is the loss the sweep still calls loss-free: 0.1 %, for the
// few datagrams iperf3 may count as lost when a test ends.
const lossFree = 0.001

// sweepMax is the top of the loss-free sweep, in kpps.
const sweepMax = 320

// sweep bisects 0..sweepMax kpps for the highest paced rate at which at
// most lossFree of the datagrams are lost, and returns the rate delivered
// in the best such step (0 if every step loses more). The delivered rate,
// not the one asked for: iperf3's client cannot always send as fast as
// asked, and then the step says nothing about higher rates.
func sweep(ctx context.Context, t topology, p params) (float64, error) {
	lo, hi, best := 0.0, float64(sweepMax), 0.0
	for range p.sweepStep {
		mid := (lo + hi) / 2
		r, err := udp(ctx, t, p.sweepSecs, mid)
		if err != nil {
			return 0, err
		}
		if r.packets > 0 && float64(r.lost) <= lossFree*float64(r.packets) {
			lo, best = mid, max(best, r.deliveredKpps())
		} else {
			hi = mid
		}
	}
	return best, nil
}

// ping returns the average and the largest RTT in µs of n pings 10 ms
// apart.
func ping(ctx context.Context, t topology, n int) (avg, max float64, err error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", t.client(), "ping", "-q", "-c", strconv.Itoa(n),
		"-i", "0.01", "-W", "1", t.serverIP()).Output()
	if err != nil {
		return 0, 0, fmt.Errorf("ping: %w", err)
	}
	// rtt min/avg/max/mdev = 0.027/0.031/0.062/0.004 ms
	for _, line := range strings.Split(string(out), "\n") {
		if _, v, ok := strings.Cut(line, " = "); ok && strings.HasPrefix(line, "rtt") {
			f := strings.Split(strings.TrimSuffix(v, " ms"), "/")
			if len(f) == 4 {
				a, _ := strconv.ParseFloat(f[1], 64)
				m, _ := strconv.ParseFloat(f[2], 64)
				return a * 1000, m * 1000, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("ping: no rtt line in %q", out)
}

// clockTick is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// architecture tapswitch runs on.
const clockTick = 100

// cpuSample is the CPU time of a set of processes and of the machine at
// the start of a test.
type cpuSample struct {
	pids    []int
	start   time.Time
	procs   uint64
	busy    uint64
	hasProc bool
}

func startCPU(pids []int) cpuSample {
	s := cpuSample{pids: pids, start: time.Now(), hasProc: len(pids) > 0}
	s.procs = procTicks(pids)
	s.busy = machineBusy()
	return s
}

// stop returns the switch's CPU % of one core (-1 without processes) and
// the machine's busy % of one core since startCPU.
func (s cpuSample) stop() (sw, machine float64) {
	secs := time.Since(s.start).Seconds()
	machine = float64(machineBusy()-s.busy) / clockTick / secs * 100
	if !s.hasProc {
		return -1, machine
	}
	return float64(procTicks(s.pids)-s.procs) / clockTick / secs * 100, machine
}

// procTicks sums utime and stime (fields 14 and 15 of /proc/PID/stat) of
// the processes, all their threads included.
func procTicks(pids []int) uint64 {
	var sum uint64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The command name, field 2, is in parentheses and may hold
		// spaces: count fields after its closing one.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 13 {
			u, _ := strconv.ParseUint(f[11], 10, 64)
			k, _ := strconv.ParseUint(f[12], 10, 64)
			sum += u + k
		}
	}
	return sum
}

// machineBusy returns the busy ticks of all cores from /proc/stat: all but
// idle and iowait.
func machineBusy() uint64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy uint64
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		if i != 3 && i != 4 && i < 8 { // idle, iowait; guest time is in user
			busy += n
		}
	}
	return busy
}
