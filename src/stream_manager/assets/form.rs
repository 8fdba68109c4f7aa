//! `POST /stream/assets/upload`'s body: `multipart/form-data` parsed by `multer` as it
//! streams in, with exactly one part `file` and optionally a text part `name`.
//!
//! Strict on purpose: any other part, a second `file` or `name`, a body that ends before its
//! closing boundary, or an empty file is refused. Every byte is bounded twice: multer's
//! limits cap the whole body (file limit + 64 KiB of form overhead) and each part, and the
//! file's bytes are counted here too, so `413` falls exactly past `max_upload_bytes` of
//! content however the chunks are cut.

use super::late_end::LateEnd;
use super::upload::Upload;
use super::{magic, AssetError, AssetStore, StoredAsset};
use bytes::Bytes;
use http_body_util::BodyDataStream;

/// Form overhead the whole body may add to the file: boundaries, part headers, `name`.
const FORM_OVERHEAD: u64 = 64 * 1024;

/// Bytes a `name` part may have: 255 characters of up to 4 UTF-8 bytes each.
const NAME_PART_BYTES: u64 = 255 * 4;

/// Most characters of a stored display name.
const NAME_CHARS: usize = 255;

/// RFC 2046: a boundary is 1 to 70 characters.
const MAX_BOUNDARY: usize = 70;

pub(super) async fn receive<B>(
    store: &AssetStore,
    headers: &http::HeaderMap,
    body: B,
) -> Result<StoredAsset, AssetError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let boundary = boundary(headers)?;
    let max_file = store.limits.max_upload_bytes;
    let limits = multer::SizeLimit::new()
        .whole_stream(max_file.saturating_add(FORM_OVERHEAD))
        .per_field(NAME_PART_BYTES)
        .for_field("file", max_file)
        .for_field("name", NAME_PART_BYTES);
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["file", "name"])
        .size_limit(limits);
    let mut form = multer::Multipart::with_constraints(
        LateEnd::new(BodyDataStream::new(body)),
        boundary,
        constraints,
    );

    let mut upload: Option<Upload<'_>> = None;
    let mut file_name: Option<String> = None;
    let mut name_part: Option<String> = None;
    while let Some(field) = form.next_field().await.map_err(form_error)? {
        match field.name() {
            Some("file") => {
                if upload.is_some() {
                    return Err(invalid("the body has more than one part named `file`"));
                }
                file_name = field.file_name().map(str::to_owned);
                upload = Some(write_file(store, field).await?);
            }
            Some("name") => {
                if name_part.is_some() {
                    return Err(invalid("the body has more than one part named `name`"));
                }
                name_part = Some(field.text().await.map_err(form_error)?);
            }
            // `allowed_fields` refuses these first; kept so the rule does not hang on it.
            _ => return Err(invalid("only the parts `file` and `name` are accepted")),
        }
    }
    // The loop ended at the closing boundary: the body is complete.
    let upload = upload.ok_or_else(|| invalid("the body has no part named `file`"))?;
    upload
        .commit(display_name(name_part.as_deref(), file_name.as_deref()))
        .await
}

/// Streams the `file` part into a new temporary file. The type is decided as soon as
/// [`magic::PREFIX_LEN`] bytes are in; a refused type is answered before anything touches
/// the disk or the rest of the body is read.
async fn write_file<'a>(
    store: &'a AssetStore,
    mut field: multer::Field<'static>,
) -> Result<Upload<'a>, AssetError> {
    let max_file = store.limits.max_upload_bytes;
    let mut received = 0u64;
    let mut held: Vec<Bytes> = Vec::new();
    let mut upload: Option<Upload<'a>> = None;
    while let Some(chunk) = field.chunk().await.map_err(form_error)? {
        received += chunk.len() as u64;
        if received > max_file {
            return Err(AssetError::TooLarge);
        }
        if let Some(upload) = upload.as_mut() {
            upload.write(&chunk).await?;
            continue;
        }
        held.push(chunk);
        let head = prefix(&held);
        if head.len() == magic::PREFIX_LEN {
            let mime = magic::detect(&head).ok_or(AssetError::UnsupportedType)?;
            let mut started = Upload::create(store, mime).await?;
            for chunk in held.drain(..) {
                started.write(&chunk).await?;
            }
            upload = Some(started);
        }
    }
    match upload {
        Some(upload) => Ok(upload),
        None if received == 0 => Err(invalid("the file is empty")),
        // 1 to 11 bytes: too short to be any accepted type.
        None => Err(AssetError::UnsupportedType),
    }
}

/// The first [`magic::PREFIX_LEN`] bytes of the held chunks (fewer if not yet arrived).
fn prefix(held: &[Bytes]) -> Vec<u8> {
    let mut head = Vec::with_capacity(magic::PREFIX_LEN);
    for chunk in held {
        let room = magic::PREFIX_LEN - head.len();
        head.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    head
}

/// The boundary of a `multipart/form-data` Content-Type. Another media type (or none) is
/// `415`; the right one with a missing or unusable boundary is `400`.
fn boundary(headers: &http::HeaderMap) -> Result<String, AssetError> {
    let value = headers
        .get(http::header::CONTENT_TYPE)
        .ok_or(AssetError::UnsupportedMediaType)?;
    let text = value
        .to_str()
        .map_err(|_| invalid("the Content-Type header is not readable"))?;
    let claims_form_data = text
        .trim_start()
        .get(..19)
        .is_some_and(|start| start.eq_ignore_ascii_case("multipart/form-data"));
    match multer::parse_boundary(text) {
        Ok(boundary) if (1..=MAX_BOUNDARY).contains(&boundary.len()) => Ok(boundary),
        Ok(_) => Err(invalid("the boundary must be 1 to 70 characters")),
        Err(_) if claims_form_data => Err(invalid("the Content-Type has no usable boundary")),
        Err(_) => Err(AssetError::UnsupportedMediaType),
    }
}

/// multer's errors as the contract's: a limit is `413`, anything else about the body `400`.
/// Messages are fixed text: nothing of the client's (part names, header bytes) is echoed.
fn form_error(error: multer::Error) -> AssetError {
    use multer::Error as E;
    match error {
        E::StreamSizeExceeded { .. } => AssetError::TooLarge,
        E::FieldSizeExceeded { field_name, .. } if field_name.as_deref() == Some("file") => {
            AssetError::TooLarge
        }
        E::FieldSizeExceeded { .. } => invalid("the `name` part is longer than 255 characters"),
        E::UnknownField { .. } => invalid("only the parts `file` and `name` are accepted"),
        E::IncompleteStream | E::IncompleteFieldData { .. } | E::IncompleteHeaders => {
            invalid("the body ends before its closing boundary")
        }
        E::StreamReadFailed(_) => invalid("the request body could not be read"),
        _ => invalid("the part headers are malformed"),
    }
}

fn invalid(message: &str) -> AssetError {
    AssetError::Multipart(message.to_owned())
}

/// The asset's display name: the `name` part if it has any content, else the file part's
/// file name, else `asset`. Control characters, bidirectional overrides (which can make
/// `gnp.exe` read as `exe.png`) and path separators become `_`; the result is trimmed and
/// cut to 255 characters. It is only ever shown, never used as a path.
pub(super) fn display_name(name_part: Option<&str>, file_name: Option<&str>) -> String {
    [name_part, file_name]
        .into_iter()
        .flatten()
        .map(clean_name)
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "asset".to_owned())
}

fn clean_name(raw: &str) -> String {
    let replaced: String = raw
        .trim()
        .chars()
        .map(|c| if is_unsafe_in_name(c) { '_' } else { c })
        .take(NAME_CHARS)
        .collect();
    replaced.trim_end().to_owned()
}

fn is_unsafe_in_name(c: char) -> bool {
    c.is_control()
        || c == '/'
        || c == '\\'
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}
