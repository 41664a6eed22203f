package contract

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is the repository root, seen from this package's directory.
const repoRoot = "../.."

// notInContract lists the VBC_* names the docs may use although internal/contract does not
// define them, each with the reason. An entry must still appear in the docs and must not
// become a contract constant: once it does, remove it here.
var notInContract = map[string]string{
	"VBC_PASSWORD":            "read by the CLI only; defined as internal/cli.EnvPassword",
	"VBC_REQUIRE_INTEGRATION": "test harness switch; defined as internal/motoserver.RequireEnv",
	"VBC_TABLE_NAME":          "accounts mode, not implemented yet",
}

// TestDesignDocMatchesContract keeps docs/design.md and this package in step: every
// environment variable constant is a row of the "Configuration" table and every VBC_* row
// there is a constant; the same for the metric names and the "Metrics" table; any other
// string constant appears in the doc as code.
func TestDesignDocMatchesContract(t *testing.T) {
	consts := stringConstants(t)
	doc := readDoc(t, "design.md")
	if len(consts) == 0 {
		t.Fatal("no string constants found in package contract")
	}

	envTable := firstColumn(t, section(t, doc, "Configuration"))
	metricTable := firstColumn(t, section(t, doc, "Metrics"))
	spans := codeSpans(doc)

	for name, value := range consts {
		switch {
		case strings.HasPrefix(name, "Env"):
			if !slices.Contains(envTable, value) {
				t.Errorf("%s = %q is not a row of the table under \"## Configuration\" in docs/design.md", name, value)
			}
		case strings.HasPrefix(name, "Metric"):
			if !slices.Contains(metricTable, value) {
				t.Errorf("%s = %q is not a row of the table under \"## Metrics\" in docs/design.md", name, value)
			}
		default:
			if !slices.Contains(spans, value) {
				t.Errorf("%s = %q does not appear as `code` in docs/design.md", name, value)
			}
		}
	}
	for _, v := range envTable {
		if strings.HasPrefix(v, "VBC_") && !hasConstant(consts, "Env", v) {
			t.Errorf("docs/design.md \"Configuration\" lists %s, which is no Env* constant of internal/contract", v)
		}
	}
	for _, v := range metricTable {
		if !hasConstant(consts, "Metric", v) {
			t.Errorf("docs/design.md \"Metrics\" lists %s, which is no Metric* constant of internal/contract", v)
		}
	}
}

// TestDocsNameOnlyKnownVariables: a VBC_* name anywhere in docs/design.md or docs/vbc.md
// is a contract constant or an entry of notInContract, so a typo or a renamed variable
// cannot hide in prose.
func TestDocsNameOnlyKnownVariables(t *testing.T) {
	consts := stringConstants(t)
	seen := map[string]bool{}
	for _, name := range []string{"design.md", "vbc.md"} {
		for _, v := range envNameRE.FindAllString(readDoc(t, name), -1) {
			seen[v] = true
			if !hasConstant(consts, "Env", v) && notInContract[v] == "" {
				t.Errorf("docs/%s names %s: neither a constant of internal/contract nor listed in notInContract", name, v)
			}
		}
	}
	for v, why := range notInContract {
		if hasConstant(consts, "Env", v) {
			t.Errorf("%s is now a constant of internal/contract: remove it from notInContract (%s)", v, why)
		}
		if !seen[v] {
			t.Errorf("notInContract lists %s, which no doc names any more: remove it", v)
		}
	}
}

// TestDocCitationsResolve: every citation of a doc section in the Go code (such as
// docs/design.md "Configuration" or docs/vbc.md "Errors") and between the two docs names a
// heading that exists.
func TestDocCitationsResolve(t *testing.T) {
	headings := map[string][]string{}
	for _, name := range []string{"design.md", "vbc.md"} {
		headings[name] = headingsOf(readDoc(t, name))
	}
	check := func(where, doc, title string) {
		if !slices.Contains(headings[doc], title) {
			t.Errorf("%s cites %s %q: no such heading (headings: %q)", where, doc, title, headings[doc])
		}
	}
	for _, name := range []string{"design.md", "vbc.md"} {
		for _, m := range docCitationRE.FindAllStringSubmatch(readDoc(t, name), -1) {
			check("docs/"+name, m[1], m[2])
		}
	}
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", "cdk.out", "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(src), "\n") {
			for _, m := range codeCitationRE.FindAllStringSubmatch(line, -1) {
				rel, _ := filepath.Rel(repoRoot, path)
				check(rel+":"+strconv.Itoa(i+1), m[1], m[2])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

var (
	envNameRE      = regexp.MustCompile(`\bVBC_[A-Z0-9_]*[A-Z0-9]\b`)
	codeSpanRE     = regexp.MustCompile("`([^`\n]+)`")
	docCitationRE  = regexp.MustCompile(`\b(design\.md|vbc\.md)(?:\]\([a-z.]+\))? "([^"\n]+)"`)
	codeCitationRE = regexp.MustCompile(`\bdocs/(design\.md|vbc\.md) "([^"\n]+)"`)
)

// stringConstants returns the exported string constants of this package (non-test files),
// name to value, read with go/parser so a new constant needs no edit here.
func stringConstants(t *testing.T) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if !name.IsExported() || i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue // only string literals are names the doc can show
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatalf("%s: %v", name.Name, err)
					}
					out[name.Name] = v
				}
			}
		}
	}
	return out
}

func hasConstant(consts map[string]string, prefix, value string) bool {
	for name, v := range consts {
		if strings.HasPrefix(name, prefix) && v == value {
			return true
		}
	}
	return false
}

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section returns the text under the level-2 heading title, up to the next level-2 heading.
func section(t *testing.T, doc, title string) string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "\n## "+title+"\n")
	if !ok {
		t.Fatalf("docs/design.md has no \"## %s\" heading", title)
	}
	body, _, _ := strings.Cut(rest, "\n## ")
	return body
}

// firstColumn returns the code spans in the first cell of each body row of the first
// Markdown table in text.
func firstColumn(t *testing.T, text string) []string {
	t.Helper()
	var out []string
	rows := 0
	inTable := false
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			if inTable {
				break
			}
			continue
		}
		inTable = true
		rows++
		if rows <= 2 { // header and separator
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range codeSpanRE.FindAllStringSubmatch(cells[1], -1) {
			out = append(out, m[1])
		}
	}
	if len(out) == 0 {
		t.Fatal("no table with `code` in its first column found")
	}
	return out
}

func codeSpans(doc string) []string {
	var out []string
	for _, m := range codeSpanRE.FindAllStringSubmatch(doc, -1) {
		out = append(out, m[1])
	}
	return out
}

// headingsOf returns the text of every Markdown heading in doc.
func headingsOf(doc string) []string {
	var out []string
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "#") {
			out = append(out, strings.TrimSpace(strings.TrimLeft(line, "#")))
		}
	}
	return out
}
