package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// GoBench is one result line of `go test -bench`: the benchmark's name without the
// GOMAXPROCS suffix, its iteration count and its metrics by unit ("ns/op", "B/op",
// "allocs/op" and custom ones such as "cpu-ns/op").
type GoBench struct {
	Name    string
	N       int
	Metrics map[string]float64
}

var procSuffix = regexp.MustCompile(`-\d+$`)

// ParseGoBench returns the result lines of `go test -bench` output.
func ParseGoBench(out string) []GoBench {
	var res []GoBench
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		b := GoBench{Name: procSuffix.ReplaceAllString(f[0], ""), N: n, Metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			b.Metrics[f[i+1]] = v
		}
		res = append(res, b)
	}
	return res
}

// RunGoBench runs the benchmarks of pkg matching pattern with -benchmem, count times
// each, from dir (the module root), and returns the parsed results.
func RunGoBench(ctx context.Context, dir, pkg, pattern string, count int, benchtime string) ([]GoBench, error) {
	args := []string{"test", "-run", "^$", "-bench", pattern, "-benchmem", "-count", strconv.Itoa(count)}
	if benchtime != "" {
		args = append(args, "-benchtime", benchtime)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go test -bench %s %s: %w\n%s", pattern, pkg, err, out)
	}
	res := ParseGoBench(string(out))
	if len(res) == 0 {
		return nil, fmt.Errorf("go test -bench %s %s: no results\n%s", pattern, pkg, out)
	}
	return res, nil
}
