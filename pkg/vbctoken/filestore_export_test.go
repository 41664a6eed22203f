package vbctoken

// PairWrites reports how many pair versions s has written, for the conformance suite.
func (s *FileStore) PairWrites() int { return int(s.writes.Load()) }
