//! A unified diff of two texts by lines (`--- a`, `+++ b`, `@@ -l,n +l,n @@` hunks with three
//! lines of context), as `build --mirror --dry-run` shows each Dockerfile's rewrite. A pure
//! function over a longest-common-subsequence table: Dockerfiles are a few hundred lines at most.

/// One line of the edit script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Same(usize, usize),
    Removed(usize),
    Added(usize),
}

fn script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push(Op::Same(i, j));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] > lcs[i + 1][j]) {
            out.push(Op::Added(j));
            j += 1;
        } else {
            out.push(Op::Removed(i));
            i += 1;
        }
    }
    out
}

/// `old` against `new` as a unified diff with `context` lines around each change; empty when the
/// texts have the same lines.
pub fn unified(old: &str, new: &str, old_name: &str, new_name: &str, context: usize) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let all = script(&a, &b);
    let changed: Vec<usize> = (0..all.len()).filter(|&k| !matches!(all[k], Op::Same(..))).collect();
    if changed.is_empty() {
        return String::new();
    }
    // Hunks: runs of changes whose context windows touch.
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &k in &changed {
        let (start, end) = (k.saturating_sub(context), (k + context + 1).min(all.len()));
        match hunks.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => hunks.push((start, end)),
        }
    }
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    for (start, end) in hunks {
        let ops = &all[start..end];
        // Lines of each text before the hunk; a side with no line in the hunk is numbered by
        // the line before it, as `diff -u` does.
        let before_a = all[..start].iter().filter(|o| !matches!(o, Op::Added(_))).count();
        let before_b = all[..start].iter().filter(|o| !matches!(o, Op::Removed(_))).count();
        let count_a = ops.iter().filter(|o| !matches!(o, Op::Added(_))).count();
        let count_b = ops.iter().filter(|o| !matches!(o, Op::Removed(_))).count();
        let at = |before: usize, count: usize| if count > 0 { before + 1 } else { before };
        out.push_str(&format!("@@ -{},{count_a} +{},{count_b} @@\n", at(before_a, count_a), at(before_b, count_b)));
        for o in ops {
            match *o {
                Op::Same(i, _) => out.push_str(&format!(" {}\n", a[i])),
                Op::Removed(i) => out.push_str(&format!("-{}\n", a[i])),
                Op::Added(j) => out.push_str(&format!("+{}\n", b[j])),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insertion_is_one_hunk_with_context() {
        let old = "FROM alpine\nWORKDIR /src\nCOPY . .\nRUN apk add x\nCMD [\"x\"]\n";
        let new = "FROM alpine\nWORKDIR /src\nCOPY . .\n# mirror\nRUN sed -i x\nRUN apk add x\nCMD [\"x\"]\n";
        let d = unified(old, new, "web/Dockerfile", ".v7/build/web/Dockerfile", 3);
        let want = "--- web/Dockerfile\n+++ .v7/build/web/Dockerfile\n@@ -1,5 +1,7 @@\n FROM alpine\n WORKDIR /src\n \
                    COPY . .\n+# mirror\n+RUN sed -i x\n RUN apk add x\n CMD [\"x\"]\n";
        assert_eq!(d, want, "line 3 of the hunk header: -1,5 +1,7\n{d}");
    }

    #[test]
    fn distant_changes_are_separate_hunks_numbered_from_their_first_line() {
        let old: String = (1..=20).map(|i| format!("l{i}\n")).collect();
        let new = old.replace("l2\n", "l2\n+a\n").replace("l18\n", "").replace("l19\n", "L19\n");
        let d = unified(&old, &new, "a", "b", 1);
        let lines: Vec<&str> = d.lines().collect();
        assert_eq!(lines[2], "@@ -2,2 +2,3 @@", "first hunk\n{d}");
        assert_eq!(&lines[3..6], [" l2", "++a", " l3"]);
        assert_eq!(lines[6], "@@ -17,4 +18,3 @@", "second hunk: l17..l20 old, l17 new at 18\n{d}");
        assert_eq!(&lines[7..], [" l17", "-l18", "-l19", "+L19", " l20"]);
    }

    #[test]
    fn equal_texts_have_no_diff_and_an_empty_side_is_numbered_by_the_line_before() {
        assert_eq!(unified("a\nb\n", "a\nb\n", "x", "y", 3), "");
        let d = unified("", "a\n", "x", "y", 3);
        assert_eq!(d, "--- x\n+++ y\n@@ -0,0 +1,1 @@\n+a\n");
    }
}
