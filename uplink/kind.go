package uplink

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/tapswitch/tapswitch/internal/options"
)

// None is the spec of no uplink: the containers reach nothing outside
// their subnet, and nothing is published.
const None = "none"

// Kind is a kind of uplink, as registered by its package.
type Kind struct {
	// Name starts the kind's specs ("host", "tap"); not None, no comma.
	Name string
	// Usage is the syntax of its specs, for help texts, e.g.
	// "tap,netns=PATH,ip=ADDR/LEN[,gw=ADDR]".
	Usage string
	// Parse parses and validates the KEY=VALUE options after the name;
	// errors wrap ErrInvalidSpec and say which key is wrong.
	Parse func(opts []string) (Spec, error)
}

var (
	kindsMu sync.RWMutex // guards kinds
	kinds   = map[string]Kind{}
)

// Register makes a kind known to Parse. Each kind's package calls it once,
// from an init function. It panics for a Kind without a Name or Parse, or
// a name registered twice: programmer errors.
func Register(k Kind) {
	if k.Name == "" || k.Name == None || strings.Contains(k.Name, ",") || k.Parse == nil {
		panic(fmt.Sprintf("uplink: Register(%q): a kind needs a name (not %q, no comma) and Parse", k.Name, None))
	}
	kindsMu.Lock()
	defer kindsMu.Unlock()
	if _, dup := kinds[k.Name]; dup {
		panic(fmt.Sprintf("uplink: Register(%q) called twice", k.Name))
	}
	kinds[k.Name] = k
}

// Kinds returns the registered kinds, sorted by name.
func Kinds() []Kind {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	out := make([]Kind, 0, len(kinds))
	for _, k := range kinds {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b Kind) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Parse parses the value of `tapswitch run --uplink`: None (or ""), or
// KIND[,KEY=VALUE...] of a registered kind. It returns nil for None.
// Errors wrap ErrInvalidSpec.
func Parse(spec string) (Spec, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" || spec == None {
		return nil, nil
	}
	parts := strings.Split(spec, ",")
	kindsMu.RLock()
	k, ok := kinds[parts[0]]
	kindsMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q: the kind must be %s", ErrInvalidSpec, parts[0], kindNames())
	}
	return k.Parse(parts[1:])
}

// Usage describes every spec Parse takes, for a flag's help.
func Usage() string {
	var s []string
	for _, k := range Kinds() {
		s = append(s, k.Usage)
	}
	return strings.Join(append(s, None), ", or ")
}

// kindNames lists the kinds Parse takes, None among them: "host, none or
// tap".
func kindNames() string {
	names := []string{None}
	for _, k := range Kinds() {
		names = append(names, k.Name)
	}
	slices.Sort(names)
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// ParseFields returns a Kind's Parse for a kind whose spec is a *C: its
// options are read into a new one with the fields fields gives
// (internal/options, errors wrapping ErrInvalidSpec), then checked and
// completed by its Validate.
func ParseFields[C any, P interface {
	*C
	Spec
	Validate() error
}](fields func(P) []options.Field) func(opts []string) (Spec, error) {
	return func(opts []string) (Spec, error) {
		c := P(new(C))
		if err := options.Fields(opts, ErrInvalidSpec, fields(c)...); err != nil {
			return nil, err
		}
		if err := c.Validate(); err != nil {
			return nil, err
		}
		return c, nil
	}
}
