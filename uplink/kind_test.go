package uplink

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// fakeSpec is the Spec of the test kind "fake": its options, verbatim.
type fakeSpec struct{ opts []string }

func (s *fakeSpec) Kind() string { return "fake" }
func (s *fakeSpec) Open(Env) (Uplink, error) {
	return nil, fmt.Errorf("%w: fake uplinks do not open", ErrInvalidSpec)
}
func (s *fakeSpec) String() string { return strings.Join(append([]string{"fake"}, s.opts...), ",") }

func init() {
	Register(Kind{Name: "fake", Usage: "fake[,ANY]", Parse: func(opts []string) (Spec, error) {
		for _, o := range opts {
			if o == "bad" {
				return nil, fmt.Errorf("%w: bad option", ErrInvalidSpec)
			}
		}
		return &fakeSpec{opts: opts}, nil
	}})
}

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		spec string
		want string // String() of the spec, "none" for nil, or a substring of the error
		ok   bool
	}{
		{"", "none", true},
		{"none", "none", true},
		{"  none ", "none", true},
		{"fake", "fake", true},
		{"fake,a=1,b", "fake,a=1,b", true},
		{"fake,bad", "bad option", false},
		{"vde", `"vde": the kind must be fake or none`, false},
		{"none,x=1", `"none": the kind must be fake or none`, false},
		{",fake", `"": the kind must be`, false},
	} {
		t.Run(tt.spec, func(t *testing.T) {
			s, err := Parse(tt.spec)
			if !tt.ok {
				if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("got %v, %v; want an ErrInvalidSpec containing %q", s, err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v", err)
			}
			got := None
			if s != nil {
				got = s.String()
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRegisterRefuses(t *testing.T) {
	parse := func([]string) (Spec, error) { return nil, nil }
	for _, k := range []Kind{
		{Name: "", Parse: parse},
		{Name: None, Parse: parse},
		{Name: "a,b", Parse: parse},
		{Name: "noparse"},
		{Name: "fake", Parse: parse}, // registered twice
	} {
		t.Run(k.Name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q) did not panic", k.Name)
				}
			}()
			Register(k)
		})
	}
	if got := len(Kinds()); got != 1 {
		t.Errorf("%d kinds registered after the refusals, want 1", got)
	}
}

func TestUsage(t *testing.T) {
	if got, want := Usage(), "fake[,ANY], or none"; got != want {
		t.Errorf("Usage: got %q, want %q", got, want)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("fake,a")
	f.Add("fake,bad")
	f.Add("x,y")
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := Parse(spec)
		if err != nil && !errors.Is(err, ErrInvalidSpec) {
			t.Fatalf("Parse(%q): %v does not wrap ErrInvalidSpec", spec, err)
		}
		if err == nil && s != nil && !strings.HasPrefix(strings.TrimSpace(spec), s.Kind()) {
			t.Fatalf("Parse(%q) gave a %s spec", spec, s.Kind())
		}
	})
}
