package options

import (
	"errors"
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	errBad := errors.New("bad spec")
	errSet := errors.New("refused by set")
	tests := []struct {
		items   []string
		want    []string // key=value pairs seen by set, in order
		wantErr error
	}{
		{items: nil},
		{items: []string{"a=1", "b=x=y"}, want: []string{"a=1", "b=x=y"}},
		{items: []string{"a=1", "a=2"}, want: []string{"a=1"}, wantErr: errBad},
		{items: []string{"a"}, wantErr: errBad},
		{items: []string{"a="}, wantErr: errBad},
		{items: []string{"a=1", "stop=1", "c=3"}, want: []string{"a=1", "stop=1"}, wantErr: errSet},
	}
	for _, tt := range tests {
		var got []string
		err := Parse(tt.items, errBad, func(k, v string) error {
			got = append(got, k+"="+v)
			if k == "stop" {
				return errSet
			}
			return nil
		})
		if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
			t.Errorf("Parse(%q): error %v, want %v", tt.items, err, tt.wantErr)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Parse(%q): set saw %q, want %q", tt.items, got, tt.want)
		}
	}
}
