//! `RESULTS.md` and `results/comparison.svg`: one table per scenario (median, spread, ratio to the
//! gateway), the machine and versions, how noisy the run was, and what could not be run.

use std::fmt::Write as _;

use super::machine::Machine;
use super::options::Options;
use super::scenarios::Scenario;
use super::servers::ServerSpec;
use super::{Cell, Results};

/// Everything a report is made from.
pub struct Report<'a> {
    /// How the run was made.
    pub opts: &'a Options,
    /// Where it ran.
    pub machine: &'a Machine,
    /// Servers, gateway first.
    pub servers: &'a [ServerSpec],
    /// Scenarios in run order.
    pub scenarios: &'a [Scenario],
    /// What every cell measured.
    pub results: &'a Results,
}

/// The server ratios are taken against.
const REFERENCE: &str = "gateway";

impl Report<'_> {
    fn cell(&self, scenario: &Scenario, threads: usize, server: &ServerSpec) -> Option<&Cell> {
        self.results.get(&(scenario.id, threads, server.name))
    }

    /// The whole Markdown report.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Comparison results\n");
        let _ = writeln!(
            md,
            "Made with `{}`. Each cell is the median of the repetitions, `±` the spread \
             ((max - min) / median), and in brackets the ratio to the gateway's median (above \
             1.00 is more for throughput, which is better, and more for latency or memory, \
             which is worse). `none`: the runs completed but gave no sample (a latency when no \
             message published in the measured window arrived before the run ended); `not \
             run`: the runs failed (see the end); `1 loop: see 1`: a server with one event \
             loop, measured at 1 thread only. Servers ran one after the other, alternating \
             (A B A B), each started fresh for every cell; see `bench/PROTOCOL.md` for what each \
             one does.\n",
            self.opts.command
        );
        let _ = writeln!(
            md,
            "Pinning (taskset): loadgen on CPU {}.",
            self.opts.loadgen_cpus
        );
        for &threads in &self.opts.threads {
            let cpus = self.opts.server_cpus_for(threads);
            let shared = if cpus == self.opts.server_cpus {
                "cores of its own".to_owned()
            } else {
                format!(
                    "more threads than the {} server core(s), so it shares the cores with \
                     loadgen and its figures include that contention",
                    self.opts.server_cpus
                )
            };
            let _ = writeln!(
                md,
                "- {threads} server thread{}: server on CPU {cpus} ({shared}).",
                if threads == 1 { "" } else { "s" }
            );
        }
        let _ = writeln!(md);
        let _ = writeln!(md, "![chart](results/comparison.svg)\n");
        let _ = writeln!(md, "## Machine\n");
        for (label, value) in &self.machine.facts {
            let _ = writeln!(md, "- {label}: {value}");
        }
        let _ = writeln!(
            md,
            "\n## Versions\n\n| component | version |\n| --- | --- |"
        );
        for (name, version) in &self.machine.versions {
            let _ = writeln!(md, "| {name} | {version} |");
        }
        for server in self.servers.iter().filter(|s| !s.multi_threaded) {
            let _ = writeln!(
                md,
                "\n{} ({}) runs one event loop: its rows at 2 threads use one.",
                server.name, server.library
            );
        }
        let _ = writeln!(md, "\n## Results");
        for scenario in self.scenarios {
            self.scenario_table(&mut md, scenario);
        }
        self.notes(&mut md);
        self.noise(&mut md);
        self.saturation(&mut md);
        self.failures(&mut md);
        md
    }

    fn notes(&self, md: &mut String) {
        let noted: Vec<_> = self
            .results
            .iter()
            .filter(|(_, cell)| !cell.notes.is_empty())
            .collect();
        if noted.is_empty() {
            return;
        }
        let _ = writeln!(
            md,
            "\n## Where each capacity search stopped\n\nThe held rate is the last step that met \
             the objective; the next step is where it missed (steps double the rate, so the \
             true limit lies between the two).\n"
        );
        for ((scenario, threads, server), cell) in noted {
            let _ = writeln!(
                md,
                "- {scenario}, {threads} threads, {server}: {}",
                cell.notes.join("; ")
            );
        }
    }

    fn scenario_table(&self, md: &mut String, scenario: &Scenario) {
        let _ = writeln!(md, "\n### {} (`{}`)\n", scenario.title, scenario.id);
        let _ = write!(md, "| threads | metric |");
        for server in self.servers {
            let _ = write!(md, " {} |", server.name);
        }
        let _ = write!(md, "\n| --- | --- |");
        for _ in self.servers {
            let _ = write!(md, " ---: |");
        }
        let _ = writeln!(md);
        for &threads in &self.opts.threads {
            for metric in scenario.metrics {
                let arrow = if metric.higher_is_better {
                    "higher is better"
                } else {
                    "lower is better"
                };
                let _ = write!(
                    md,
                    "| {threads} | {} ({}, {arrow}) |",
                    metric.key, metric.unit
                );
                let reference = self
                    .servers
                    .iter()
                    .find(|s| s.name == REFERENCE)
                    .and_then(|s| self.cell(scenario, threads, s))
                    .and_then(|c| c.metrics.get(metric.key))
                    .and_then(|s| s.median());
                for server in self.servers {
                    let cell = self.cell(scenario, threads, server);
                    let samples = cell.and_then(|c| c.metrics.get(metric.key));
                    let Some(median) = samples.and_then(|s| s.median()) else {
                        let ran = cell.is_some_and(|c| c.runs_ok > 0);
                        let text = if ran {
                            "none"
                        } else if threads > 1 && !server.multi_threaded {
                            "1 loop: see 1"
                        } else {
                            "not run"
                        };
                        let _ = write!(md, " {text} |");
                        continue;
                    };
                    let _ = write!(md, " {}", format_value(median));
                    if let Some(spread) = samples.and_then(|s| s.spread_percent()) {
                        let _ = write!(md, " ±{spread:.0}%");
                    }
                    if let Some(reference) = reference.filter(|r| *r != 0.0) {
                        if server.name != REFERENCE {
                            let _ = write!(md, " ({:.2}x)", median / reference);
                        }
                    }
                    let _ = write!(md, " |");
                }
                let _ = writeln!(md);
            }
        }
    }

    fn noise(&self, md: &mut String) {
        let mut spreads: Vec<f64> = self
            .results
            .values()
            .flat_map(|cell| cell.metrics.values())
            .filter_map(|samples| samples.spread_percent())
            .collect();
        let _ = writeln!(md, "\n## Noise\n");
        if spreads.is_empty() {
            let _ = writeln!(md, "One repetition per cell: no spread to report.");
            return;
        }
        spreads.sort_by(f64::total_cmp);
        let median = spreads[spreads.len() / 2];
        let worst = spreads[spreads.len() - 1];
        let _ = writeln!(
            md,
            "Over {} measured figures the spread between repetitions was {median:.0}% at the \
             median and {worst:.0}% at worst. Differences smaller than the spread of the two \
             cells compared are not results.",
            spreads.len()
        );
    }

    fn saturation(&self, md: &mut String) {
        let saturated: Vec<_> = self
            .results
            .iter()
            .filter(|(_, cell)| cell.loadgen_saturated > 0)
            .collect();
        if saturated.is_empty() {
            return;
        }
        let _ = writeln!(
            md,
            "\n## Cells where loadgen may have been the limit\n\nIn these, loadgen's busiest \
             thread was close to a full core, so the server may be faster than shown.\n"
        );
        for ((scenario, threads, server), cell) in saturated {
            let _ = writeln!(
                md,
                "- {scenario}, {threads} threads, {server}: {} of the runs",
                cell.loadgen_saturated
            );
        }
    }

    fn failures(&self, md: &mut String) {
        let failed: Vec<_> = self
            .results
            .iter()
            .filter(|(_, cell)| !cell.failures.is_empty())
            .collect();
        if failed.is_empty() {
            return;
        }
        let _ = writeln!(md, "\n## Runs that failed\n");
        for ((scenario, threads, server), cell) in failed {
            for failure in &cell.failures {
                let _ = writeln!(md, "- {scenario}, {threads} threads, {server}: {failure}");
            }
        }
    }

    /// A bar chart of each scenario's headline figure, one panel per (scenario, threads), bars
    /// scaled to the best server of the panel.
    pub fn svg(&self) -> String {
        const WIDTH: usize = 860;
        const LABEL: usize = 170;
        const BAR: usize = 16;
        const GAP: usize = 4;
        const TITLE: usize = 26;
        let panel_height = TITLE + self.servers.len() * (BAR + GAP) + 10;
        let panels: Vec<(&Scenario, usize)> = self
            .scenarios
            .iter()
            .flat_map(|s| self.opts.threads.iter().map(move |&t| (s, t)))
            .collect();
        let height = panels.len() * panel_height + 10;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
             font-family=\"sans-serif\" font-size=\"12\">"
        );
        let _ = writeln!(svg, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
        for (index, (scenario, threads)) in panels.iter().enumerate() {
            let top = index * panel_height + 10;
            let Some(metric) = scenario.metrics.first() else {
                continue;
            };
            let better = if metric.higher_is_better {
                "higher is better"
            } else {
                "lower is better"
            };
            let _ = writeln!(
                svg,
                "<text x=\"10\" y=\"{}\" font-weight=\"bold\">{}, {threads} thread{}: {} ({}, {better})</text>",
                top + 16,
                escape(scenario.title),
                if *threads == 1 { "" } else { "s" },
                escape(metric.key),
                escape(metric.unit)
            );
            let medians: Vec<Option<f64>> = self
                .servers
                .iter()
                .map(|server| {
                    self.cell(scenario, *threads, server)
                        .and_then(|c| c.metrics.get(metric.key))
                        .and_then(|s| s.median())
                })
                .collect();
            let max = medians.iter().flatten().copied().fold(0.0, f64::max);
            for (row, (server, median)) in self.servers.iter().zip(&medians).enumerate() {
                let y = top + TITLE + row * (BAR + GAP);
                let _ = writeln!(
                    svg,
                    "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                    LABEL - 6,
                    y + BAR - 4,
                    escape(server.name)
                );
                let Some(value) = median else {
                    let why = if *threads > 1 && !server.multi_threaded {
                        "one event loop: see 1 thread"
                    } else {
                        "not run"
                    };
                    let _ = writeln!(
                        svg,
                        "<text x=\"{LABEL}\" y=\"{}\" fill=\"#888\">{why}</text>",
                        y + BAR - 4
                    );
                    continue;
                };
                let span = (WIDTH - LABEL - 110) as f64;
                let length = if max > 0.0 {
                    (value / max * span).max(1.0)
                } else {
                    1.0
                };
                let colour = if server.name.starts_with(REFERENCE) {
                    "#d9480f"
                } else {
                    "#4263eb"
                };
                let _ = writeln!(
                    svg,
                    "<rect x=\"{LABEL}\" y=\"{y}\" width=\"{length:.1}\" height=\"{BAR}\" fill=\"{colour}\"/>"
                );
                let _ = writeln!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{}\">{}</text>",
                    LABEL as f64 + length + 6.0,
                    y + BAR - 4,
                    format_value(*value)
                );
            }
        }
        let _ = writeln!(svg, "</svg>");
        svg
    }
}

/// Three significant figures, with k/M suffixes for large values.
pub fn format_value(value: f64) -> String {
    let abs = value.abs();
    if abs >= 1e6 {
        format!("{:.3}M", value / 1e6)
    } else if abs >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else if abs >= 100.0 {
        format!("{value:.0}")
    } else if abs >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::stats::Samples;

    #[test]
    fn values_keep_three_significant_figures() {
        assert_eq!(format_value(1_234_567.0), "1.235M");
        assert_eq!(format_value(45_678.0), "45.7k");
        assert_eq!(format_value(123.4), "123");
        assert_eq!(format_value(12.34), "12.3");
        assert_eq!(format_value(1.234), "1.23");
    }

    #[test]
    fn tables_show_median_spread_and_ratio_to_the_gateway() {
        let opts = Options::parse(vec!["--threads".into(), "1".into()]).unwrap();
        let servers =
            super::super::servers::all(std::path::Path::new("/b"), std::path::Path::new("/p"));
        let scenarios: Vec<Scenario> = super::super::scenarios::all()
            .into_iter()
            .filter(|s| s.id == "echo-32b-w1")
            .collect();
        let mut results = Results::new();
        let mut put = |server: &'static str, values: &[f64]| {
            let mut samples = Samples::default();
            values.iter().for_each(|&v| samples.push(v));
            let cell: &mut Cell = results.entry(("echo-32b-w1", 1, server)).or_default();
            cell.metrics.insert("msg/s", samples);
        };
        put("gateway", &[100_000.0, 110_000.0, 90_000.0]);
        put("tokio-tungstenite", &[50_000.0, 50_000.0, 50_000.0]);
        let machine = Machine {
            facts: vec![("CPU".into(), "test".into())],
            versions: vec![],
        };
        let report = Report {
            opts: &opts,
            machine: &machine,
            servers: &servers,
            scenarios: &scenarios,
            results: &results,
        };
        let md = report.markdown();
        let row = md
            .lines()
            .find(|l| l.starts_with("| 1 | msg/s"))
            .unwrap_or_else(|| panic!("no msg/s row in\n{md}"));
        assert!(row.contains("| 100.0k ±20% |"), "{row}");
        assert!(row.contains("| 50.0k ±0% (0.50x) |"), "{row}");
        assert!(row.contains("not run"), "{row}");
        let svg = report.svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("100.0k") && svg.contains("not run"));
    }
}
