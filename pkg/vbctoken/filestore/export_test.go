package filestore

// PairWrites reports how many pair versions s has written, for the conformance suite.
func (s *Store) PairWrites() int { return int(s.writes.Load()) }
