package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tapswitch/tapswitch/api"
)

// captureDemo captures the demo's own traffic on every port while one
// container pings another, and prints the first lines of the file through
// tshark, or tcpdump, when one is installed.
func (d *demo) captureDemo(from, to api.Port) error {
	file := filepath.Join(d.dir, "demo.pcapng")
	const count = 12
	d.say("\n$ tapswitch capture --all -w demo.pcapng -c %d icmp    # while %s pings %s", count, from.Name, to.Name)
	ctx, cancel := context.WithTimeout(d.ctx, 20*time.Second)
	defer cancel()
	stream, err := d.client.Capture(ctx, api.CaptureRequest{All: true, Count: count, Duration: 10 * time.Second, Filter: "icmp"})
	if err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	defer stream.Close()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(f, stream)
		copied <- err
	}()
	if _, err := d.ping(d.prefix+from.Name, addrOf(to.IP)); err != nil {
		return fmt.Errorf("ping while capturing: %w", err)
	}
	if err := <-copied; err != nil {
		return fmt.Errorf("capture stream: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if res, ok := stream.Result(); ok {
		d.say("  %d packets captured, %d dropped", res.Captured, res.Dropped)
	}
	var view *exec.Cmd
	if _, err := exec.LookPath("tshark"); err == nil {
		d.say("$ tshark -r demo.pcapng")
		view = exec.CommandContext(ctx, "tshark", "-r", file)
	} else if _, err := exec.LookPath("tcpdump"); err == nil {
		d.say("$ tcpdump -nn -r demo.pcapng")
		view = exec.CommandContext(ctx, "tcpdump", "-nn", "-r", file)
	} else {
		d.say("  (install tshark or tcpdump to read it: sudo make deps)")
		return nil
	}
	out, err := view.Output()
	if err != nil {
		return fmt.Errorf("%s: %w", view.Path, err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	for _, l := range lines[:min(len(lines), count)] {
		d.say("  %s", l)
	}
	return nil
}
