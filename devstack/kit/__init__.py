"""What tests, bench/ and demo/ share: throwaway catalogs, image servers, the API server, load, process accounting."""
