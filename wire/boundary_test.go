package wire

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// This file enforces the package's reason to be: IP headers are parsed
// here and nowhere else. The capture filter's direct interpreter (capture/)
// is exempt: it reads headers on its own on purpose, to cross-check the BPF
// the filter compiler emits. Test files are exempt too (they build and
// check packets byte by byte, independently of the code they test).

// exempt are the folders, relative to the module root, not checked.
var exempt = []string{"wire", "capture", ".git"}

// headerParsing returns what in the Go source src looks like parsing or
// describing an IPv4 or IPv6 header by hand: a version check (b[0]>>4 ==
// 4), an IHL computation (b[0]&0x0f)*4, the slicing of header addresses
// (b[12:16], b[16:20], b[8:24], b[24:40]), and constants re-declaring what
// this package declares (EtherTypes, protocol numbers, header lengths).
func headerParsing(t *testing.T, name string, src []byte) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, src, 0)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	report := func(n ast.Node, what string) {
		found = append(found, fset.Position(n.Pos()).String()+": "+what)
	}
	lit := func(e ast.Expr) (int64, bool) {
		if p, ok := e.(*ast.ParenExpr); ok {
			e = p.X
		}
		b, ok := e.(*ast.BasicLit)
		if !ok || b.Kind != token.INT {
			return 0, false
		}
		v, err := strconv.ParseInt(b.Value, 0, 64)
		return v, err == nil
	}
	isOp := func(e ast.Expr, op token.Token, val int64) bool {
		for {
			switch x := e.(type) {
			case *ast.ParenExpr:
				e = x.X
				continue
			case *ast.CallExpr: // int(...), uint16(...)
				if len(x.Args) == 1 {
					e = x.Args[0]
					continue
				}
			case *ast.BinaryExpr:
				v, ok := lit(x.Y)
				return x.Op == op && ok && v == val
			}
			return false
		}
	}
	constName := regexp.MustCompile(`(?i)^(proto(icmp|tcp|udp)|eth(er)?hdrlen|ether(type)?(ipv4|ipv6|arp)|ipv4(min)?(hdr|header)(len)?)$`)
	ast.Inspect(f, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.BinaryExpr:
			if x.Op == token.EQL || x.Op == token.NEQ {
				for _, pair := range [2][2]ast.Expr{{x.X, x.Y}, {x.Y, x.X}} {
					if v, ok := lit(pair[1]); ok && (v == 4 || v == 6) && isOp(pair[0], token.SHR, 4) {
						report(x, "IP version check")
					}
				}
			}
			if x.Op == token.MUL {
				for _, pair := range [2][2]ast.Expr{{x.X, x.Y}, {x.Y, x.X}} {
					if v, ok := lit(pair[1]); ok && v == 4 && (isOp(pair[0], token.AND, 0x0f) || isOp(pair[0], token.SHR, 4)) {
						report(x, "header length in 32-bit words")
					}
				}
			}
		case *ast.SliceExpr:
			lo, ok1 := lit(orZero(x.Low))
			hi, ok2 := lit(orZero(x.High))
			if ok1 && ok2 && (lo == 12 && hi == 16 || lo == 16 && hi == 20 || lo == 8 && hi == 24 || lo == 24 && hi == 40) {
				report(x, "IP address slicing")
			}
		case *ast.ValueSpec:
			for i, id := range x.Names {
				// A name for this package's constant (X = wire.X) is fine.
				if constName.MatchString(id.Name) && (i >= len(x.Values) || !isSelector(x.Values[i])) {
					report(id, "re-declares "+id.Name)
				}
			}
		}
		return true
	})
	return found
}

func isSelector(e ast.Expr) bool {
	_, ok := e.(*ast.SelectorExpr)
	return ok
}

func orZero(e ast.Expr) ast.Expr {
	if e == nil {
		return &ast.BasicLit{Kind: token.INT, Value: "0"}
	}
	return e
}

// TestHeaderParsingDetected shows what the check finds, so that
// TestNoHeaderParsingOutside cannot pass by finding nothing at all.
func TestHeaderParsingDetected(t *testing.T) {
	for _, tt := range []struct {
		name, src string
		want      int
	}{
		{"version", "package p\nfunc f(b []byte) bool { return b[0]>>4 != 4 }", 1},
		{"version 6, parenthesised", "package p\nfunc f(b []byte) bool { return 6 == (b[0] >> 4) }", 1},
		{"ihl", "package p\nfunc f(b []byte) int { return int(b[0]&0x0f) * 4 }", 1},
		{"tcp data offset", "package p\nfunc f(b []byte) int { return int(b[12]>>4) * 4 }", 1},
		{"addresses", "package p\nfunc f(b []byte) ([4]byte, [4]byte) { return [4]byte(b[12:16]), [4]byte(b[16:20]) }", 2},
		{"ipv6 addresses", "package p\nfunc f(b []byte) []byte { return b[24:40] }", 1},
		{"constants", "package p\nconst (\n\tethHdrLen = 14\n\tprotoTCP = 6\n\tetherTypeIPv4 = 0x0800\n)", 3},
		{"MACs are fine", "package p\nfunc f(b []byte) []byte { return b[6:12] }", 0},
		{"other shifts are fine", "package p\nfunc f(v uint16) bool { return v>>4 == 3 }", 0},
		{"naming wire's constants is fine", "package p\nimport \"x/wire\"\nconst ProtoTCP = wire.ProtoTCP", 0},
		{"views are fine", "package p\nimport \"x/wire\"\nfunc f(b []byte) { h, _ := wire.ParseIPv4(b); _ = h.Src() }", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := headerParsing(t, "x.go", []byte(tt.src)); len(got) != tt.want {
				t.Errorf("found %d (%q), want %d", len(got), got, tt.want)
			}
		})
	}
}

// TestNoHeaderParsingOutside checks every non-test Go file of the module
// outside this package and capture/.
func TestNoHeaderParsingOutside(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			for _, e := range exempt {
				if rel == e {
					return filepath.SkipDir
				}
			}
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		checked++
		for _, f := range headerParsing(t, rel, src) {
			t.Errorf("%s: parse it with package wire", f)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked only %d files under %s: wrong root?", checked, root)
	}
}
