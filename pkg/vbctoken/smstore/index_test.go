package smstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// shardSizes spreads accounts over the shards and returns each shard's encoded size.
func shardSizes(accounts []string) [IndexShards]int {
	var shards [IndexShards]index
	for _, a := range accounts {
		shards[shardOf(a)].accounts = append(shards[shardOf(a)].accounts, a)
	}
	var sizes [IndexShards]int
	for i, s := range shards {
		slices.Sort(s.accounts)
		sizes[i] = len(s.encode())
	}
	return sizes
}

func ids(n int, format string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i)
	}
	return out
}

// What 10,000 accounts cost the index, and where it ends (docs/design.md "Accounts mode").
func TestIndexCapacity(t *testing.T) {
	for _, c := range []struct {
		name   string
		format string
	}{
		{"typical 14-character ids", "customer-%05d"},
		{"longest 63-character ids", "%063d"},
	} {
		sizes := shardSizes(ids(10_000, c.format))
		total, largest := 0, 0
		for _, s := range sizes {
			total += s
			largest = max(largest, s)
		}
		if largest > maxSecretString {
			t.Errorf("%s: 10,000 accounts need a %d-byte shard, more than %d", c.name, largest, maxSecretString)
		}
		t.Logf("%s: 10,000 accounts in %d bytes, largest shard %d bytes (%.0f%% of 64 KB)",
			c.name, total, largest, 100*float64(largest)/maxSecretString)
	}
	// The fleet is full when its first shard is: add accounts until one would not fit.
	for _, format := range []string{"customer-%05d", "%063d"} {
		var shards [IndexShards]int
		for i := range shards {
			shards[i] = len(index{}.encode()) - 1
		}
		n := 0
		for ; ; n++ {
			a := fmt.Sprintf(format, n)
			s := &shards[shardOf(a)]
			if *s+len(a)+3 > maxSecretString {
				break
			}
			*s += len(a) + 3
		}
		if n < 10_000 {
			t.Errorf("ids like %q: the index holds %d accounts, fewer than 10,000", fmt.Sprintf(format, 1), n)
		}
		t.Logf("ids like %q (%d characters): the first shard fills at account %d", fmt.Sprintf(format, 1), len(fmt.Sprintf(format, 1)), n+1)
	}
}

// Accounts spread evenly enough that no shard fills long before the others.
func TestShardOfSpreads(t *testing.T) {
	var counts [IndexShards]int
	for _, a := range ids(16_000, "acct-%d") {
		counts[shardOf(a)]++
	}
	for i, n := range counts {
		if n < 850 || n > 1150 {
			t.Errorf("shard %d holds %d of 16,000 accounts, want about 1,000", i, n)
		}
	}
	// The layout is stored: the function must never change.
	if got := []int{shardOf("acme"), shardOf("globex-eu"), shardOf("a")}; !slices.Equal(got, []int{15, 3, 12}) {
		t.Errorf("shardOf(acme, globex-eu, a) = %v, want [15 3 12]: the stored layout changed", got)
	}
}

func TestIndexRoundTrip(t *testing.T) {
	idx, err := decodeIndex([]byte(`{"accounts":["b","a","b"],"zz":[1],"version":1,"aa":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !idx.add([]string{"c", "a"}) || idx.add([]string{"c"}) {
		t.Error("add reports wrongly whether something was missing")
	}
	if got, want := string(idx.encode()), `{"version":1,"accounts":["a","b","c"],"aa":"x","zz":[1]}`; got != want {
		t.Errorf("encode = %s, want %s", got, want)
	}
	if got, want := string(index{}.encode()), `{"version":1,"accounts":[]}`; got != want {
		t.Errorf("empty shard = %s, want %s", got, want)
	}
	for in, want := range map[string]error{
		`{"version":1}`:                   nil,
		`{"version":2,"accounts":[]}`:     vbctoken.ErrNewerSchema,
		`{"version":0,"accounts":[]}`:     vbctoken.ErrMalformedSecret,
		`{"version":"1","accounts":[]}`:   vbctoken.ErrMalformedSecret,
		`{"version":1.5,"accounts":[]}`:   vbctoken.ErrMalformedSecret,
		`{"version":1,"accounts":[1]}`:    vbctoken.ErrMalformedSecret,
		`{"version":1,"accounts":["_x"]}`: vbctoken.ErrMalformedSecret,
		`null`:                            vbctoken.ErrMalformedSecret,
		``:                                vbctoken.ErrMalformedSecret,
	} {
		if _, err := decodeIndex([]byte(in)); !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Errorf("decodeIndex(%s) = %v, want %v", in, err, want)
		}
	}
}

// FuzzDecodeIndex: a shard is outside input (anyone with write access to the prefix may
// have written it). Whatever it holds, decoding never panics, and what decodes re-encodes
// to valid JSON that decodes to the same accounts and fields.
func FuzzDecodeIndex(f *testing.F) {
	for _, seed := range []string{
		`{"version":1,"accounts":["acme","globex-eu"]}`,
		`{"version":1,"accounts":[],"note":{"a":[1,2]}}`,
		`{"version":2}`,
		`{"version":1,"accounts":["Acme"]}`,
		`{"version":1,"accounts":null,"version":1}`,
		`{"version":1e0,"accounts":["a"]}`,
		`{"version":1,"accounts":["a"],"\u0061ccounts":["b"]}`,
		`[1]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		idx, err := decodeIndex(data)
		if err != nil {
			if !errors.Is(err, vbctoken.ErrMalformedSecret) && !errors.Is(err, vbctoken.ErrNewerSchema) {
				t.Fatalf("error %v is neither malformed nor newer", err)
			}
			return
		}
		for _, a := range idx.accounts {
			if vbctoken.CheckAccount(a) != nil {
				t.Fatalf("decoded an invalid account id %q", a)
			}
		}
		out := idx.encode()
		if !json.Valid(out) {
			t.Fatalf("encode wrote invalid JSON: %s", out)
		}
		again, err := decodeIndex(out)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", out, err)
		}
		if !slices.Equal(again.accounts, idx.accounts) || !slices.Equal(slices.Sorted(maps.Keys(again.rest)), slices.Sorted(maps.Keys(idx.rest))) {
			t.Fatalf("round trip changed %s into %s", data, out)
		}
		if strings.Count(string(out), `"version"`) != 1 {
			t.Fatalf("encode wrote the version more than once: %s", out)
		}
	})
}
