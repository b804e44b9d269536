package eval

import (
	"bytes"
	"cmp"
	"fmt"
	"image/color"
	"regexp"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/kvfoot/kvfoot/kv"
)

// plots writes the report's figures into dir, each as PNG and SVG: score against KV
// footprint per category with the threshold line (the paper's main figure), KV entries
// over the time of one request per method, and the head masks of the methods that
// have them as layer × KV head maps.
func (r *StudyReport) plots(out *Folder) error {
	for _, cat := range r.categoryColumns() {
		p := r.scorePlot(cat)
		if p == nil {
			continue
		}
		if err := save(out, p, 16, 11, "score_vs_footprint_"+cat); err != nil {
			return err
		}
	}
	if p := r.timelinePlot(); p != nil {
		if err := save(out, p, 16, 11, "kv_timeline"); err != nil {
			return err
		}
	}
	for _, m := range r.Methods {
		p, err := maskPlot(m)
		if err != nil {
			return err
		}
		if p != nil {
			if err := save(out, p, 12, 16, "head_masks_"+fileName(m.Name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// save renders the plot in memory and writes it as the folder writes every file
// (a temporary file renamed into place), as PNG and SVG.
func save(out *Folder, p *plot.Plot, w, h vg.Length, base string) error {
	for _, ext := range []string{"png", "svg"} {
		wt, err := p.WriterTo(w*vg.Centimeter, h*vg.Centimeter, ext)
		if err != nil {
			return fmt.Errorf("report: plot %s.%s: %w", base, ext, err)
		}
		var b bytes.Buffer
		if _, err := wt.WriteTo(&b); err != nil {
			return fmt.Errorf("report: plot %s.%s: %w", base, ext, err)
		}
		if err := out.write(base+"."+ext, b.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

func fileName(s string) string {
	s = strings.ReplaceAll(s, "*", "star")
	return unsafeName.ReplaceAllString(s, "_")
}

// scorePlot is score against footprint for one category: a line per method through
// its settings, full attention's score and the threshold as horizontal lines; the
// footprint axis runs from 100% down, as in the paper.
func (r *StudyReport) scorePlot(cat string) *plot.Plot {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s at %d tokens", cat, slices.Max(r.Lengths))
	p.X.Label.Text = "KV footprint (% of full attention)"
	p.Y.Label.Text = "score"
	p.X.Scale = plot.InvertedScale{Normalizer: plot.LinearScale{}}
	p.X.Min, p.X.Max = 0, 100
	p.Legend.Top, p.Legend.Left = false, false
	full, any := 0.0, false
	for i, m := range r.Methods {
		pts := m.curves[cat]
		if v, ok := m.full[cat]; ok {
			full = v
		}
		if len(pts) == 0 {
			continue
		}
		any = true
		xys := make(plotter.XYs, len(pts))
		for j, pt := range pts {
			xys[j].X, xys[j].Y = 100*pt[0], pt[1]
		}
		slices.SortFunc(xys, func(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) })
		l, s, err := plotter.NewLinePoints(xys)
		if err != nil {
			continue
		}
		l.Color, s.Color = plotutil.Color(i), plotutil.Color(i)
		s.Shape = plotutil.Shape(i)
		p.Add(l, s)
		p.Legend.Add(m.Name, l, s)
	}
	if !any {
		return nil
	}
	for _, h := range []struct {
		y     float64
		dash  bool
		label string
	}{{full, false, "full attention"}, {r.Threshold * full, true, fmt.Sprintf("%.0f%% of full", 100*r.Threshold)}} {
		l, err := plotter.NewLine(plotter.XYs{{X: 0, Y: h.y}, {X: 100, Y: h.y}})
		if err != nil {
			continue
		}
		l.Color = color.Gray{Y: 120}
		if h.dash {
			l.Color = color.RGBA{R: 200, A: 255}
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(l)
		p.Legend.Add(h.label, l)
	}
	return p
}

// timelinePlot is the KV entries live during every forward (those the forward's last
// query sees, per stored head) of one request per method, against the position.
func (r *StudyReport) timelinePlot() *plot.Plot {
	p := plot.New()
	p.Title.Text = "KV entries over one request (each method at its critical setting, else its densest)"
	p.X.Label.Text = "tokens processed"
	p.Y.Label.Text = "KV entries live per head"
	p.Legend.Top, p.Legend.Left = true, true
	any := false
	for i, m := range r.Methods {
		if len(m.timeline) == 0 {
			continue
		}
		xys := make(plotter.XYs, 0, len(m.timeline)+1)
		xys = append(xys, plotter.XY{})
		for _, st := range m.timeline {
			xys = append(xys, plotter.XY{X: float64(st.Pos + st.N), Y: st.Visible})
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			continue
		}
		l.Color = plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i)
		p.Add(l)
		p.Legend.Add(m.Name, l)
		any = true
	}
	if !any {
		return nil
	}
	return p
}

var masksKey = regexp.MustCompile(`(?:^|[:,])masks=([^,+]+)`)

// maskGrid is a masks file as a heat map: columns are KV heads, rows layers.
type maskGrid [][]float64

func (g maskGrid) Dims() (c, r int)   { return len(g[0]), len(g) }
func (g maskGrid) Z(c, r int) float64 { return g[r][c] }
func (g maskGrid) X(c int) float64    { return float64(c) }
func (g maskGrid) Y(r int) float64    { return float64(r) }

// maskPlot is the head mask of a headmask method as a layer × KV head map of its
// values, the heads streaming at the critical setting marked "s"; nil for a method
// without masks or whose masks file is gone.
func maskPlot(m MethodStudy) (*plot.Plot, error) {
	spec := m.Spec
	var sparsity *float64
	if c, ok := m.Categories[overallOf(m.Categories)]; ok && c.Setting != "" {
		spec, sparsity = c.Setting, c.Sparsity
	}
	match := masksKey.FindStringSubmatch(spec)
	if match == nil || m.Missing != "" {
		return nil, nil
	}
	vals, err := kv.ReadMasks(match[1], 0, 0)
	if err != nil {
		return nil, nil // the report stays useful without the figure
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s head masks (1 = full head)", m.Name)
	p.X.Label.Text = "KV head"
	p.Y.Label.Text = "layer"
	p.Add(plotter.NewHeatMap(maskGrid(vals), palette.Heat(16, 1)))
	p.X.Tick.Marker, p.Y.Tick.Marker = intTicks(len(vals[0])), intTicks(len(vals))
	if sparsity != nil {
		p.Title.Text = fmt.Sprintf("%s head masks; s: streaming at sparsity %.3g", m.Name, *sparsity)
		var xyl plotter.XYLabels
		for l, row := range kv.StreamingHeads(vals, *sparsity) {
			for g, st := range row {
				if st {
					xyl.XYs = append(xyl.XYs, plotter.XY{X: float64(g), Y: float64(l)})
					xyl.Labels = append(xyl.Labels, "s")
				}
			}
		}
		if len(xyl.XYs) > 0 {
			labels, err := plotter.NewLabels(xyl)
			if err == nil {
				for i := range labels.TextStyle {
					labels.TextStyle[i].Color = color.Black
					labels.TextStyle[i].XAlign, labels.TextStyle[i].YAlign = -0.5, -0.5
				}
				p.Add(labels)
			}
		}
	}
	return p, nil
}

// intTicks labels 0 … n−1.
func intTicks(n int) plot.ConstantTicks {
	t := make(plot.ConstantTicks, n)
	for i := range t {
		t[i] = plot.Tick{Value: float64(i), Label: fmt.Sprint(i)}
	}
	return t
}

// overallOf is the key of the overall target among a method's categories.
func overallOf(cats map[string]Critical) string {
	if _, ok := cats["overall"]; ok {
		return "overall"
	}
	for k := range cats {
		return k
	}
	return ""
}
