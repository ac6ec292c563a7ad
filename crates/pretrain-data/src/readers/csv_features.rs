//! Numeric feature tables with a label column, e.g. scikit-learn's `digits.csv.gz`.

use std::path::Path;

use crate::error::{DataError, Result};
use crate::item::FeatureItem;
use crate::readers::table::{Column, Table, TableOptions};

/// Reads a table of numbers; `label` names the integer class column (`None`: unlabeled) and every
/// other column is a feature. Labels must be below `num_classes`.
pub fn read_csv_features(
    path: &Path,
    options: &TableOptions,
    label: Option<&Column>,
    num_classes: usize,
) -> Result<Vec<FeatureItem>> {
    let table = Table::read(path, options)?;
    table.check_width(path)?;
    let label_index = label.map(|c| table.column_index(c, path)).transpose()?;
    let column_name = |i: usize| match &table.header {
        Some(h) => h[i].clone(),
        None => i.to_string(),
    };
    table
        .rows
        .iter()
        .map(|(line, row)| {
            let bad = |i: usize, message: String| DataError::BadField {
                path: path.to_path_buf(),
                line: *line,
                column: column_name(i),
                message,
            };
            let mut features = Vec::with_capacity(row.len());
            let mut label = None;
            for (i, field) in row.iter().enumerate() {
                let field = field.trim();
                if Some(i) == label_index {
                    let class: usize = field
                        .parse()
                        .map_err(|_| bad(i, format!("label {field:?} is not a class index")))?;
                    if class >= num_classes {
                        return Err(bad(i, format!("label {class} is not below {num_classes}")));
                    }
                    label = Some(class);
                } else {
                    let value: f32 = field
                        .parse()
                        .map_err(|_| bad(i, format!("{field:?} is not a number")))?;
                    if !value.is_finite() {
                        return Err(bad(i, format!("{field:?} is not finite")));
                    }
                    features.push(value);
                }
            }
            Ok(FeatureItem { features, label })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn reads_shipped_digits() {
        let items = testdata::digits();
        assert_eq!(items.len(), 1797);
        assert!(items.iter().all(|i| i.features.len() == 64));
        assert_eq!(items[0].label, Some(0));
        assert_eq!(&items[0].features[..6], &[0.0, 0.0, 5.0, 13.0, 9.0, 1.0]);
        let mut counts = [0usize; 10];
        items.iter().for_each(|i| counts[i.label.unwrap()] += 1);
        // Published class counts of the digits data set.
        assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
        let max = items
            .iter()
            .flat_map(|i| &i.features)
            .fold(0f32, |a, &b| a.max(b));
        assert_eq!(max, 16.0);
    }

    fn write(content: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }

    #[test]
    fn header_and_named_label() {
        let (_d, path) = write("a,label,b\n1.5,2,3\n4,0,-1e2\n");
        let items = read_csv_features(
            &path,
            &TableOptions::default(),
            Some(&Column::Name("label".into())),
            3,
        )
        .unwrap();
        assert_eq!(items[1].features, vec![4.0, -100.0]);
        assert_eq!(items[0].label, Some(2));
    }

    #[test]
    fn bad_tables_name_line_and_column() {
        let opts = TableOptions {
            has_header: false,
            ..Default::default()
        };
        let (_d, path) = write("1,2,0\n1,x,1\n");
        let err = read_csv_features(&path, &opts, Some(&Column::Last), 2).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("line 2") && msg.contains("\"1\"") && msg.contains("t.csv"),
            "{msg}"
        );
        let (_d, path) = write("1,2,0\n1,2\n");
        let err = read_csv_features(&path, &opts, Some(&Column::Last), 2).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::CountMismatch {
                    expected: 3,
                    found: 2,
                    ..
                }
            ),
            "{err}"
        );
        // Rows wider than the header: refused by count, naming the file (no panic while
        // naming a column the header lacks).
        let (_d, path) = write("a,label\n1,2,x\n");
        let err = read_csv_features(
            &path,
            &TableOptions::default(),
            Some(&Column::Name("label".into())),
            3,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                DataError::CountMismatch {
                    expected: 2,
                    found: 3,
                    ..
                }
            ) && err.to_string().contains("t.csv"),
            "{err}"
        );
        let (_d, path) = write("1,2,7\n");
        let err = read_csv_features(&path, &opts, Some(&Column::Last), 2).unwrap_err();
        assert!(err.to_string().contains("label 7"), "{err}");
        let (_d, path) = write("1,2,1\n");
        let err = read_csv_features(&path, &opts, Some(&Column::Name("y".into())), 2).unwrap_err();
        assert!(err.to_string().contains("has_header"), "{err}");
        let err = read_csv_features(&path, &opts, Some(&Column::Index(9)), 2).unwrap_err();
        assert!(err.to_string().contains("3 columns"), "{err}");
        let (_d, path) = write("\n\n");
        assert!(matches!(
            read_csv_features(&path, &opts, None, 2),
            Err(DataError::Empty { .. })
        ));
        let (_d, path) = write("1,NaN\n");
        assert!(read_csv_features(&path, &opts, None, 2).is_err());
    }
}
