// Command dnsload measures a DNS server's rate and latency, as `make
// bench-dns` runs it against tapswitch's embedded server and dnsmasq:
//
//	dnsload -server ADDR[:PORT] -names a.x,b.x,... [-c 8] [-d 5s] [-qtype A]
//
// Each of c workers keeps one UDP query outstanding on a socket of its own
// (a closed loop), cycling through the names; an answer must carry the
// query's ID, NOERROR and at least one record, else it is counted as an
// error. A query unanswered for 1 s counts as lost and is not sent again.
// It prints one line of key=value pairs: queries per second, the 50th, 99th
// and 99.9th percentile latencies in microseconds, errors and losses.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

func main() {
	server := flag.String("server", "", "the server, ADDR or ADDR:PORT")
	names := flag.String("names", "", "comma-separated names to ask for, in turn")
	conc := flag.Int("c", 8, "concurrent workers, each with one query outstanding")
	dur := flag.Duration("d", 5*time.Second, "how long to send")
	qtype := flag.String("qtype", "A", "query type")
	flag.Parse()
	if err := run(*server, *names, *qtype, *conc, *dur); err != nil {
		fmt.Fprintln(os.Stderr, "dnsload:", err)
		os.Exit(1)
	}
}

type result struct {
	lat           []time.Duration
	errs, lost, n int
}

func run(server, names, qtype string, conc int, dur time.Duration) error {
	if server == "" || names == "" || conc < 1 || dur <= 0 {
		return errors.New("-server and -names are required, -c and -d must be positive")
	}
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(server, "53")
	}
	qt, ok := dns.StringToType[strings.ToUpper(qtype)]
	if !ok {
		return fmt.Errorf("query type %q unknown", qtype)
	}
	var queries [][]byte
	for _, n := range strings.Split(names, ",") {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(n), qt)
		b, err := m.Pack()
		if err != nil {
			return fmt.Errorf("name %q: %w", n, err)
		}
		queries = append(queries, b)
	}
	results := make([]result, conc)
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(dur)
	for w := range conc {
		c, err := net.Dial("udp", server)
		if err != nil {
			return err
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[w] = worker(c, queries, w, stop)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all result
	for _, r := range results {
		all.lat = append(all.lat, r.lat...)
		all.errs += r.errs
		all.lost += r.lost
		all.n += r.n
	}
	slices.Sort(all.lat)
	pct := func(p float64) int64 {
		if len(all.lat) == 0 {
			return 0
		}
		return all.lat[min(len(all.lat)-1, int(p*float64(len(all.lat))))].Microseconds()
	}
	fmt.Printf("qps=%.0f p50_us=%d p99_us=%d p999_us=%d answered=%d errors=%d lost=%d concurrency=%d seconds=%.1f\n",
		float64(len(all.lat))/elapsed.Seconds(), pct(0.50), pct(0.99), pct(0.999), len(all.lat), all.errs, all.lost, conc, elapsed.Seconds())
	return nil
}

// worker sends queries on c until stop, one at a time, and times them.
func worker(c net.Conn, queries [][]byte, w int, stop time.Time) result {
	var r result
	q := make([]byte, 0, 512)
	buf := make([]byte, 4096)
	id := uint16(w << 12)
	for i := w; time.Now().Before(stop); i++ {
		id++
		q = append(q[:0], queries[i%len(queries)]...)
		q[0], q[1] = byte(id>>8), byte(id)
		sent := time.Now()
		if _, err := c.Write(q); err != nil {
			r.errs++
			continue
		}
		r.n++
		c.SetReadDeadline(sent.Add(time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				r.lost++
				break
			}
			if n < 12 || buf[0] != byte(id>>8) || buf[1] != byte(id) {
				continue // a late answer to a lost query
			}
			lat := time.Since(sent)
			rcode := buf[3] & 0x0f
			ancount := int(buf[6])<<8 | int(buf[7])
			if rcode != dns.RcodeSuccess || ancount == 0 {
				r.errs++
			} else {
				r.lat = append(r.lat, lat)
			}
			break
		}
	}
	return r
}
