package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/internal/netnsutil"
)

// Addresses inside the soak's namespaces (documentation ranges).
const (
	lanIP = "198.51.100.1" // the lan namespace, the uplink's gateway
	upIP  = "198.51.100.2" // the switch's uplink address
)

// rig is the soak's daemon and namespaces.
type rig struct {
	bin, dir, sock string
	daemon         *exec.Cmd
	client         *api.Client
	ns             []string // created, removed by close
	lan, web, mac  string
	churn          []string
	metrics        string // the daemon's metrics address

	cycles, conns, connErrs, captures, frames atomic.Int64
}

func (r *rig) newNS(suffix string) (string, error) {
	name := fmt.Sprintf("tss%d-%s", os.Getpid(), suffix)
	if err := netnsutil.Add(name); err != nil {
		return "", err
	}
	r.ns = append(r.ns, name)
	return name, nil
}

// start creates the namespaces and the daemon, and attaches the fixed
// containers.
func (r *rig) start(ctx context.Context) error {
	var err error
	if r.dir, err = os.MkdirTemp("", "tss"); err != nil {
		return err
	}
	r.sock = filepath.Join(r.dir, "ctl.sock")
	for _, n := range []struct {
		p    *string
		name string
	}{{&r.lan, "lan"}, {&r.web, "web"}, {&r.mac, "mac"}} {
		if *n.p, err = r.newNS(n.name); err != nil {
			return err
		}
	}
	for i := range 4 {
		n, err := r.newNS("c" + strconv.Itoa(i))
		if err != nil {
			return err
		}
		r.churn = append(r.churn, n)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port for the metrics
	if err != nil {
		return err
	}
	r.metrics = ln.Addr().String()
	ln.Close()
	spec := "tap,netns=" + netnsutil.Path(r.lan) + ",ifname=ts0,ip=" + upIP + "/24,gw=" + lanIP
	r.daemon = exec.Command(r.bin, "run", "--control", r.sock, "--uplink", spec, "--metrics", r.metrics)
	logf, err := os.Create(filepath.Join(r.dir, "daemon.log"))
	if err != nil {
		return err
	}
	r.daemon.Stdout, r.daemon.Stderr = logf, logf
	if err := r.daemon.Start(); err != nil {
		return err
	}
	r.client = api.NewClient(r.sock)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := r.client.Info(ctx); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("daemon did not answer within 10 s (log in %s)", r.dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, err := exec.Command("ip", "-n", r.lan, "addr", "add", lanIP+"/24", "dev", "ts0").CombinedOutput(); err != nil {
		return fmt.Errorf("lan address: %v: %s", err, out)
	}
	if _, err := r.client.Attach(ctx, api.AttachRequest{Netns: netnsutil.Path(r.web), Name: "web", Publish: []string{"8080:80"}}); err != nil {
		return err
	}
	if _, err := r.client.Attach(ctx, api.AttachRequest{Netns: netnsutil.Path(r.mac), Name: "mac", AllowSpoof: true}); err != nil {
		return err
	}
	return r.serveWeb()
}

// serveWeb answers every connection to web's port 80 with a line.
func (r *rig) serveWeb() error {
	_, err := netnsutil.ServeTCP(r.web, "tcp4", ":80", func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte("soak\n"))
	})
	return err
}

// close stops the daemon and removes the namespaces and files.
func (r *rig) close() {
	if r.daemon != nil && r.daemon.Process != nil {
		r.daemon.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { r.daemon.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			r.daemon.Process.Kill()
			<-done
		}
	}
	for _, n := range r.ns {
		if err := netnsutil.Del(n); err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
		}
	}
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
}

// churn attaches and detaches the churn namespaces in turn until ctx ends.
func (r *rig) churnLoop(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		ns := r.churn[i%len(r.churn)]
		name := "churn" + strconv.Itoa(i%len(r.churn))
		if _, err := r.client.Attach(ctx, api.AttachRequest{Netns: netnsutil.Path(ns), Name: name}); err == nil {
			r.client.Detach(ctx, name)
			r.cycles.Add(1)
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// connLoop opens short connections from lan to the published port.
func (r *rig) connLoop(ctx context.Context) {
	var d net.Dialer
	for ctx.Err() == nil {
		var c net.Conn
		err := netnsutil.Do(netnsutil.Path(r.lan), func() (err error) {
			c, err = d.DialContext(ctx, "tcp4", upIP+":8080")
			return err
		})
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = io.ReadAll(c)
			c.Close()
		}
		switch {
		case err == nil:
			r.conns.Add(1)
		case ctx.Err() == nil: // not the end of the soak cutting it
			r.connErrs.Add(1)
		}
		sleep(ctx, 20*time.Millisecond)
	}
}

// floodLoop sends frames from new source MACs out of mac's eth0, 2000 a
// second, to an unknown unicast MAC with the local experimental EtherType.
func (r *rig) floodLoop(ctx context.Context) error {
	var fd int
	var idx int
	err := netnsutil.Do(netnsutil.Path(r.mac), func() error {
		var err error
		fd, err = syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ALL)))
		if err != nil {
			return err
		}
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		idx = ifi.Index
		return nil
	})
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	sa := &syscall.SockaddrLinklayer{Protocol: htons(0x88b5), Ifindex: idx}
	frame := make([]byte, 60)
	copy(frame, []byte{0x02, 0xff, 0xff, 0, 0, 1, 0x02, 0xbb})
	binary.BigEndian.PutUint16(frame[12:], 0x88b5)
	var seq uint32
	for ctx.Err() == nil {
		for range 200 {
			seq++
			binary.BigEndian.PutUint32(frame[8:], seq)
			if syscall.Sendto(fd, frame, 0, sa) == nil {
				r.frames.Add(1)
			}
		}
		sleep(ctx, 100*time.Millisecond)
	}
	return nil
}

// captureLoop starts a 2-second capture of web every 5 seconds.
func (r *rig) captureLoop(ctx context.Context) {
	for ctx.Err() == nil {
		cmd := exec.CommandContext(ctx, r.bin, "capture", "--control", r.sock, "web", "-w", os.DevNull, "--duration", "2s")
		if cmd.Run() == nil {
			r.captures.Add(1)
		}
		sleep(ctx, 3*time.Second)
	}
}

// goroutines reads go_goroutines from the daemon's metrics.
func (r *rig) goroutines(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.metrics+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("no go_goroutines in the metrics")
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
