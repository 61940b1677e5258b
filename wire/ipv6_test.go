
func TestIPVersion(t *testing.T) {
	for _, tt := range []struct {
		in   []byte
		want uint8
	}{
		{nil, 0},
		{[]byte{0x45}, 4},
		{[]byte{0x60, 0, 0, 0}, 6},
		{[]byte{0x00}, 0},
	} {
		if got := IPVersion(tt.in); got != tt.want {
			t.Errorf("IPVersion(%x) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
