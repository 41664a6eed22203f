package cli

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// exitCodes are the CLI's exit codes, in order.
var exitCodes = []int{ExitOK, ExitFailure, ExitUsage, ExitReconsent, ExitTransient, ExitNoStore, ExitLocked}

var (
	exitRow    = regexp.MustCompile(`(?m)^\| (\d+) \| (.+) \|$`)
	commandRow = regexp.MustCompile("(?m)^\\| `vbctoken ([a-z-]+)")
	helpRow    = regexp.MustCompile(`(?m)^  (\d+)  \S`)
)

// docs/design.md's "Admin CLI" section is the one description of the CLI's contract: its
// exit-code table is the CLI's exit codes, the help's table too, and its command table is
// the CLI's commands.
func TestDesignDocAdminCLI(t *testing.T) {
	data, err := os.ReadFile("../../docs/design.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	start := strings.Index(doc, "\n## Admin CLI\n")
	if start < 0 {
		t.Fatal(`docs/design.md has no "## Admin CLI" section`)
	}
	section := doc[start+1:]
	if end := strings.Index(section[1:], "\n## "); end >= 0 {
		section = section[:end+1]
	}

	var documented []int
	for _, m := range exitRow.FindAllStringSubmatch(section, -1) {
		n, _ := strconv.Atoi(m[1])
		documented = append(documented, n)
	}
	if !slices.Equal(documented, exitCodes) {
		t.Errorf("docs/design.md \"Admin CLI\" lists exit codes %v; the CLI has %v", documented, exitCodes)
	}
	var help []int
	for _, m := range helpRow.FindAllStringSubmatch(exitHelp, -1) {
		n, _ := strconv.Atoi(m[1])
		help = append(help, n)
	}
	if !slices.Equal(help, exitCodes) {
		t.Errorf("the help lists exit codes %v; the CLI has %v", help, exitCodes)
	}

	var names, want []string
	for _, m := range commandRow.FindAllStringSubmatch(section, -1) {
		names = append(names, m[1])
	}
	for _, c := range commands {
		want = append(want, c.name)
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("docs/design.md \"Admin CLI\" documents the commands %v; the CLI has %v", names, want)
	}
}
