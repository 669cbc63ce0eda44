//! TensorBoard's HParams dashboard data, which tensorboard-rs leaves `unimplemented!()`.
//!
//! The plugin reads three summaries, each an empty value whose metadata carries `plugin_name: "hparams"` and a
//! serialized `HParamsPluginData` (tensorboard/plugins/hparams/plugin_data.proto; tensorboard-proto ships the
//! generated Rust types):
//! - `_hparams_/experiment` (once, in the sweep directory): every swept hyperparameter with its type and
//!   values, and the metrics the table shows (`test/<metric>` scalars of each trial's run);
//! - `_hparams_/session_start_info` (each trial's run): that trial's hyperparameter values;
//! - `_hparams_/session_end_info` (each trial's run): its final status.

use protobuf::well_known_types::{ListValue, Value};
use protobuf::Message;
use tensorboard_proto::api::{DataType, Experiment, HParamInfo, MetricInfo, MetricName, Status};
use tensorboard_proto::plugin_hparams::{HParamsPluginData, SessionEndInfo, SessionStartInfo};
use tensorboard_proto::summary::{Summary, SummaryMetadata, SummaryMetadata_PluginData, Summary_Value};

/// A hyperparameter value as the dashboard shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum HValue {
    Num(f64),
    Str(String),
    Bool(bool),
}

impl HValue {
    fn proto(&self) -> Value {
        let mut v = Value::new();
        match self {
            HValue::Num(x) => v.set_number_value(*x),
            HValue::Str(s) => v.set_string_value(s.clone()),
            HValue::Bool(b) => v.set_bool_value(*b),
        }
        v
    }
}

/// The trial's outcome as the dashboard's status filter knows it.
#[derive(Debug, Clone, Copy)]
pub enum SessionStatus {
    Success,
    Failure,
    Running,
}

fn summary(tag: &str, data: HParamsPluginData) -> std::io::Result<Summary> {
    let mut pd = SummaryMetadata_PluginData::new();
    pd.set_plugin_name("hparams".into());
    pd.set_content(data.write_to_bytes().map_err(|e| std::io::Error::other(e.to_string()))?);
    let mut meta = SummaryMetadata::new();
    meta.set_plugin_data(pd);
    let mut value = Summary_Value::new();
    value.set_tag(tag.into());
    value.set_metadata(meta);
    let mut s = Summary::new();
    s.set_value(vec![value].into());
    Ok(s)
}

/// `_hparams_/experiment`: hyperparameters (name → the values the sweep gives it) and metric tags.
pub fn experiment(hparams: &[(String, Vec<HValue>)], metric_tags: &[String], created: f64) -> std::io::Result<Summary> {
    let mut exp = Experiment::new();
    exp.set_time_created_secs(created);
    let infos = hparams
        .iter()
        .map(|(name, values)| {
            let mut info = HParamInfo::new();
            info.set_name(name.clone());
            let ty = match values.first() {
                Some(HValue::Num(_)) if values.iter().all(|v| matches!(v, HValue::Num(_))) => DataType::DATA_TYPE_FLOAT64,
                Some(HValue::Bool(_)) if values.iter().all(|v| matches!(v, HValue::Bool(_))) => DataType::DATA_TYPE_BOOL,
                _ => DataType::DATA_TYPE_STRING,
            };
            info.set_field_type(ty);
            let mut distinct: Vec<&HValue> = vec![];
            for v in values {
                if !distinct.contains(&v) {
                    distinct.push(v);
                }
            }
            // A discrete domain for the values actually used (the dashboard's filter checkboxes).
            if ty != DataType::DATA_TYPE_FLOAT64 || distinct.len() <= 20 {
                let mut list = ListValue::new();
                list.set_values(distinct.iter().map(|v| v.proto()).collect::<Vec<_>>().into());
                info.set_domain_discrete(list);
            }
            info
        })
        .collect::<Vec<_>>();
    exp.set_hparam_infos(infos.into());
    let metrics = metric_tags
        .iter()
        .map(|tag| {
            let mut name = MetricName::new();
            name.set_group(String::new());
            name.set_tag(tag.clone());
            let mut m = MetricInfo::new();
            m.set_name(name);
            m.set_display_name(tag.clone());
            m
        })
        .collect::<Vec<_>>();
    exp.set_metric_infos(metrics.into());
    let mut data = HParamsPluginData::new();
    data.set_version(0);
    data.set_experiment(exp);
    summary("_hparams_/experiment", data)
}

/// `_hparams_/session_start_info`: one trial's hyperparameter values.
pub fn session_start(hparams: &[(String, HValue)], group: &str, start: f64) -> std::io::Result<Summary> {
    let mut info = SessionStartInfo::new();
    info.set_hparams(hparams.iter().map(|(k, v)| (k.clone(), v.proto())).collect());
    info.set_group_name(group.into());
    info.set_start_time_secs(start);
    let mut data = HParamsPluginData::new();
    data.set_version(0);
    data.set_session_start_info(info);
    summary("_hparams_/session_start_info", data)
}

/// `_hparams_/session_end_info`: how the trial ended.
pub fn session_end(status: SessionStatus, end: f64) -> std::io::Result<Summary> {
    let mut info = SessionEndInfo::new();
    info.set_status(match status {
        SessionStatus::Success => Status::STATUS_SUCCESS,
        SessionStatus::Failure => Status::STATUS_FAILURE,
        SessionStatus::Running => Status::STATUS_RUNNING,
    });
    info.set_end_time_secs(end);
    let mut data = HParamsPluginData::new();
    data.set_version(0);
    data.set_session_end_info(info);
    summary("_hparams_/session_end_info", data)
}
