package dynamostore

// SetPageLimit caps the items each Scan page of f evaluates, to force pagination in tests.
func SetPageLimit(f *Fleet, n int32) { f.pageLimit = n }
