//! Descriptors printed back as proto source.

use std::fmt::Write as _;

use prost_reflect::{
    Cardinality, DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor,
    MethodDescriptor, ServiceDescriptor, Syntax,
};

use crate::{descriptors, error::Error};

/// `symbol` described: what it is, then its proto source.
pub fn describe(pool: &DescriptorPool, symbol: &str) -> Result<String, Error> {
    let symbol = symbol.trim_start_matches('.');
    let mut out = String::new();
    if let Some(service) = pool.get_service_by_name(symbol) {
        let _ = writeln!(out, "{symbol} is a service:");
        service_source(&mut out, &service);
    } else if let Some(message) = pool.get_message_by_name(symbol) {
        let _ = writeln!(out, "{symbol} is a message:");
        message_source(&mut out, &message, 0);
    } else if let Some(enumeration) = pool.get_enum_by_name(symbol) {
        let _ = writeln!(out, "{symbol} is an enum:");
        enum_source(&mut out, &enumeration, 0);
    } else if let Some(method) = descriptors::method(pool, symbol) {
        let _ = writeln!(out, "{} is a method:", method.full_name());
        method_source(&mut out, &method, 0);
    } else {
        return Err(Error::new(format!("symbol {symbol:?} not found")));
    }
    Ok(out)
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn service_source(out: &mut String, service: &ServiceDescriptor) {
    let _ = writeln!(out, "service {} {{", service.name());
    for method in service.methods() {
        method_source(out, &method, 1);
    }
    out.push_str("}\n");
}

fn method_source(out: &mut String, method: &MethodDescriptor, depth: usize) {
    indent(out, depth);
    let stream = |on: bool| if on { "stream " } else { "" };
    let _ = writeln!(
        out,
        "rpc {} ( {}.{} ) returns ( {}.{} );",
        method.name(),
        stream(method.is_client_streaming()),
        method.input().full_name(),
        stream(method.is_server_streaming()),
        method.output().full_name(),
    );
}

fn message_source(out: &mut String, message: &MessageDescriptor, depth: usize) {
    indent(out, depth);
    let _ = writeln!(out, "message {} {{", message.name());
    let proto2 = message.parent_file().syntax() == Syntax::Proto2;
    // Fields in their declared order; a real oneof's fields together, where
    // its first field is.
    let mut printed_oneofs = Vec::new();
    for field in message.fields() {
        match field.containing_oneof() {
            Some(oneof) if !oneof.is_synthetic() => {
                if printed_oneofs.contains(&oneof.name().to_string()) {
                    continue;
                }
                printed_oneofs.push(oneof.name().to_string());
                indent(out, depth + 1);
                let _ = writeln!(out, "oneof {} {{", oneof.name());
                for member in oneof.fields() {
                    field_source(out, &member, depth + 2, proto2, true);
                }
                indent(out, depth + 1);
                out.push_str("}\n");
            }
            _ => field_source(out, &field, depth + 1, proto2, false),
        }
    }
    for nested in message.child_messages() {
        if !nested.is_map_entry() {
            message_source(out, &nested, depth + 1);
        }
    }
    for nested in message.child_enums() {
        enum_source(out, &nested, depth + 1);
    }
    indent(out, depth);
    out.push_str("}\n");
}

fn field_source(
    out: &mut String,
    field: &FieldDescriptor,
    depth: usize,
    proto2: bool,
    in_oneof: bool,
) {
    indent(out, depth);
    if field.is_map() {
        if let Kind::Message(entry) = field.kind() {
            let key = entry.map_entry_key_field();
            let value = entry.map_entry_value_field();
            let _ = writeln!(
                out,
                "map<{}, {}> {} = {};",
                type_name(&key.kind()),
                type_name(&value.kind()),
                field.name(),
                field.number()
            );
            return;
        }
    }
    let label = match field.cardinality() {
        _ if in_oneof => "",
        Cardinality::Repeated => "repeated ",
        Cardinality::Required => "required ",
        Cardinality::Optional if proto2 => "optional ",
        // proto3 `optional`: the field sits in a synthetic oneof.
        Cardinality::Optional
            if field
                .containing_oneof()
                .is_some_and(|oneof| oneof.is_synthetic()) =>
        {
            "optional "
        }
        Cardinality::Optional => "",
    };
    let _ = writeln!(
        out,
        "{label}{} {} = {};",
        type_name(&field.kind()),
        field.name(),
        field.number()
    );
}

fn enum_source(out: &mut String, enumeration: &EnumDescriptor, depth: usize) {
    indent(out, depth);
    let _ = writeln!(out, "enum {} {{", enumeration.name());
    for value in enumeration.values() {
        indent(out, depth + 1);
        let _ = writeln!(out, "{} = {};", value.name(), value.number());
    }
    indent(out, depth);
    out.push_str("}\n");
}

fn type_name(kind: &Kind) -> String {
    match kind {
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
        Kind::Message(message) => format!(".{}", message.full_name()),
        Kind::Enum(enumeration) => format!(".{}", enumeration.full_name()),
    }
}
